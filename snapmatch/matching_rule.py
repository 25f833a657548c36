"""Which attendee each face of an event belongs to: one pure decision over plain values.

The service (``snapmatch.matching``) and the matching bench both call ``decide``; nothing here
touches a database, Redis or an engine, so the rule is measured exactly as it runs.

The rule, in words (the README's matching section gives the figures behind each number):

* **Groups.** Faces of the event whose descriptors are within ``link`` of each other (and not in the
  same photo) form a group: in practice one person's faces. ``link`` is tight (0.45; different
  people measured at 0.56 and more), so groups are rarely mixed; groups only grow as photos arrive,
  which keeps the decision incremental (a new face can only change the groups it touches).
* **One attendee per face.** A face is a candidate only for the attendee whose reference photos are
  closest to it, and only when the runner-up attendee is at least ``margin`` farther.
* **Sure, directly**: the face is within ``sure`` of one of the attendee's references (stricter,
  ``sure_small``, for faces narrower than ``small_face_px``), unless the face sits among someone
  else's photos: ``min_group - 1`` or more faces linked to it whose median distance to the
  attendee is beyond ``threshold`` (a stranger's photos, one of which resembles the attendee).
* **Sure, through the group**: the face is within ``reach`` of the attendee and its group is the
  attendee's: the group's median distance to the attendee is at most ``group_median``, no other
  attendee has a sure face in it, and the attendee never said "not me" to one of its photos. That
  is how a photo far from the selfie (years apart, other light) joins.
* **Maybe**: otherwise, when the face is within ``threshold`` (the do-it-yourself rule's 0.6) of
  its closest attendee (even without the margin): shown apart, never as theirs until they confirm.
* **Corrections** win: "not me" hides the photo for that attendee and the faces they rejected
  count as evidence against similar faces (a face closer to a rejected face than to the
  attendee's references is not theirs); "is me" makes the photo theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Verdict(StrEnum):
    SURE = "sure"
    MAYBE = "maybe"


@dataclass(frozen=True)
class MatchRule:
    threshold: float = 0.6
    sure: float = 0.52
    sure_small: float = 0.45
    small_face_px: float = 70.0
    link: float = 0.5
    reach: float = 0.7
    group_median: float = 0.6
    min_group: int = 3
    margin: float = 0.02
    # A group never grows past this by merging (chained look-alikes in a huge event): a new face
    # then joins only the group it links to most, so re-deciding a group stays cheap.
    max_group: int = 1000

    @classmethod
    def from_threshold(cls, threshold: float) -> MatchRule:
        """The default rule around a configured do-it-yourself threshold (FACE_MATCH_THRESHOLD)."""
        shift = threshold - 0.6
        base = cls()
        return cls(
            threshold=threshold,
            sure=base.sure + shift,
            sure_small=base.sure_small + shift,
            reach=base.reach + shift,
            group_median=base.group_median + shift,
        )


@dataclass(frozen=True)
class Attendee:
    """An attendee's evidence: reference descriptors (selfies, confirmed faces) and rejected ones."""

    references: np.ndarray  # (k, d) float32, k >= 1
    rejected: np.ndarray | None = None  # (m, d) faces they said were not them
    not_me_photos: frozenset[int] = frozenset()
    is_me_photos: frozenset[int] = frozenset()


@dataclass(frozen=True)
class FaceDecision:
    face: int  # index into the faces given to ``decide``
    attendee: int
    verdict: Verdict
    distance: float


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (one matrix product)."""
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def neighbour_pairs(
    descriptors: np.ndarray,
    photo_ids: Sequence[int],
    widths: Sequence[float],
    rule: MatchRule,
    new: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Index pairs (i, j) of faces within ``rule.link`` of each other, in different photos, both
    at least ``rule.small_face_px`` wide (small faces' descriptors are too vague to chain through).

    With ``new``: only pairs with i in ``new`` (the faces just added), j anywhere."""
    rows = np.arange(len(descriptors)) if new is None else np.asarray(new, dtype=int)
    if len(rows) == 0 or len(descriptors) == 0:
        return []
    distances = pairwise(descriptors[rows], descriptors)
    photos = np.asarray(photo_ids)
    big = np.asarray(widths, dtype=np.float64) >= rule.small_face_px
    close = (distances <= rule.link) & (photos[rows][:, None] != photos[None, :]) & big[rows][:, None] & big[None, :]
    return [(int(rows[i]), int(j)) for i, j in zip(*np.nonzero(close), strict=True) if rows[i] != j]


def group_labels(
    descriptors: np.ndarray, photo_ids: Sequence[int], widths: Sequence[float], rule: MatchRule
) -> np.ndarray:
    """Connected components of the ``link`` graph: one label per face (the smallest index in its group)."""
    parent = list(range(len(descriptors)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in neighbour_pairs(descriptors, photo_ids, widths, rule):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(len(descriptors))], dtype=np.int64)


def join_groups(
    links: Mapping[int, int], sizes: Mapping[int, int], new_face: int, rule: MatchRule
) -> tuple[int, set[int]]:
    """Where a new face goes: ``links`` = group id -> how many of the face's links land in it,
    ``sizes`` = group id -> faces. Returns the target group and the groups merged into it."""
    if not links:
        return new_face, set()
    if sum(sizes.get(g, 1) for g in links) + 1 <= rule.max_group:
        target = min(links)
        return target, set(links) - {target}
    return max(links, key=lambda g: (links[g], -g)), set()


def decide(
    descriptors: np.ndarray,
    photo_ids: Sequence[int],
    widths: Sequence[float],
    groups: Sequence[int],
    attendees: Mapping[int, Attendee],
    rule: MatchRule,
) -> list[FaceDecision]:
    """Sure and maybe faces per attendee, for the given faces (whole groups: the decision for a
    face reads its whole group, so callers pass every face of each group they re-decide)."""
    n = len(descriptors)
    if n == 0 or not attendees:
        return []
    ids = list(attendees)
    # Distance from every face to every attendee (closest reference): one matrix product for all.
    counts = [len(attendees[a].references) for a in ids]
    full = pairwise(np.concatenate([attendees[a].references for a in ids]).astype(np.float32), descriptors)
    dist = np.minimum.reduceat(full, np.concatenate([[0], np.cumsum(counts)[:-1]]), axis=0)  # (A, n)
    rejected = np.full_like(dist, np.inf)
    for k, a in enumerate(ids):
        neg = attendees[a].rejected
        if neg is not None and len(neg):
            rejected[k] = pairwise(neg, descriptors).min(axis=0)
    order = np.argsort(dist, axis=0)
    owner = order[0]
    d1 = dist[owner, np.arange(n)]
    d2 = dist[order[1], np.arange(n)] if len(ids) > 1 else np.full(n, np.inf)
    small = np.asarray(widths, dtype=np.float64) < rule.small_face_px
    sure_limit = np.where(small, rule.sure_small, rule.sure)
    photos = np.asarray(photo_ids)
    labels = np.asarray(groups)
    # Excluded: a photo the owner called "not me", or a face closer to one they rejected.
    excluded = rejected[owner, np.arange(n)] <= d1
    for k, a in enumerate(ids):
        if attendees[a].not_me_photos:
            excluded |= (owner == k) & np.isin(photos, list(attendees[a].not_me_photos))
    clear = (d2 - d1 >= rule.margin) & ~excluded
    direct = clear & (d1 <= sure_limit)

    decisions: list[FaceDecision] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        medians = np.median(dist[:, members], axis=1)  # (A,): how far the group is from each attendee
        by_median = np.argsort(medians)
        group_owner = int(by_median[0])
        runner_median = float(medians[by_median[1]]) if len(ids) > 1 else np.inf
        owner_name = ids[group_owner]
        group_is_theirs = (
            len(members) >= 2
            and float(medians[group_owner]) <= rule.group_median
            and runner_median - float(medians[group_owner]) >= rule.margin
            and float(d1[members].min()) <= rule.threshold
            and not any(int(photos[j]) in attendees[owner_name].not_me_photos for j in members)
        )
        for i in members:
            k = int(owner[i])
            a = ids[k]
            if excluded[i]:
                continue
            if int(photos[i]) in attendees[a].is_me_photos:
                decisions.append(FaceDecision(int(i), a, Verdict.SURE, float(d1[i])))
                continue
            stranger_group = _among_strangers(i, members, descriptors, dist[k], rule)
            joins_group = group_is_theirs and k == group_owner and d1[i] <= rule.reach
            if (direct[i] and not stranger_group) or joins_group:
                decisions.append(FaceDecision(int(i), a, Verdict.SURE, float(d1[i])))
            elif d1[i] <= rule.threshold:
                # Borderline, or too close to call between two attendees: offered to the closest.
                decisions.append(FaceDecision(int(i), a, Verdict.MAYBE, float(d1[i])))
    return decisions


def _among_strangers(
    face: int, members: np.ndarray, descriptors: np.ndarray, to_attendee: np.ndarray, rule: MatchRule
) -> bool:
    """The face's own neighbours in its group (faces linked to it) are someone else: at least
    ``min_group - 1`` of them, most of them farther than ``threshold`` from the attendee. Local, so a
    large mixed group (chained look-alikes in a big event) does not veto every face in it."""
    if len(members) < rule.min_group:
        return False
    others = members[members != face]
    near = others[pairwise(descriptors[face : face + 1], descriptors[others])[0] <= rule.link]
    return len(near) >= rule.min_group - 1 and float(np.median(to_attendee[near])) > rule.threshold


def photo_verdicts(
    decisions: Sequence[FaceDecision], photo_ids: Sequence[int]
) -> dict[tuple[int, int], tuple[Verdict, float]]:
    """(attendee, photo) -> the photo's verdict for that attendee (sure beats maybe) and best distance."""
    out: dict[tuple[int, int], tuple[Verdict, float]] = {}
    for d in decisions:
        key = (d.attendee, int(photo_ids[d.face]))
        current = out.get(key)
        if (
            current is None
            or (d.verdict is Verdict.SURE and current[0] is Verdict.MAYBE)
            or (d.verdict is current[0] and d.distance < current[1])
        ):
            out[key] = (d.verdict, d.distance)
    return out


# ---- collection engines (Rekognition) -----------------------------------------------------------


@dataclass(frozen=True)
class ProviderRule:
    """The same rules on a provider's similarity scale (0-100; hits arrive as distance = 1 - s/100).

    The provider already drops hits below its match similarity (REKOGNITION_MATCH_SIMILARITY); of
    the rest, a hit at ``sure_similarity`` or above is sure and the others are maybe."""

    sure_similarity: float = 90.0
    margin: float = 2.0  # similarity points the best attendee must lead the runner-up by


def decide_provider_hits(
    hits: Sequence[tuple[int, int, int, float]],
    not_me: Mapping[int, set[int]],
    rule: ProviderRule,
) -> dict[tuple[int, int], tuple[Verdict, float]]:
    """(attendee, face, photo, distance) hits -> (attendee, face) -> verdict: one attendee per face
    (the most similar, by ``margin``), none on a photo the attendee called "not me"."""
    best: dict[int, list[tuple[float, int, int]]] = {}
    for attendee, face, photo, distance in hits:
        if photo in not_me.get(attendee, set()):
            continue
        best.setdefault(face, []).append((distance, attendee, photo))
    out: dict[tuple[int, int], tuple[Verdict, float]] = {}
    for face, candidates in best.items():
        by_attendee: dict[int, float] = {}
        for distance, attendee, _ in candidates:
            by_attendee[attendee] = min(distance, by_attendee.get(attendee, np.inf))
        ranked = sorted((d, a) for a, d in by_attendee.items())
        distance, attendee = ranked[0]
        clear = len(ranked) == 1 or (ranked[1][0] - distance) * 100 >= rule.margin
        sure = (1 - distance) * 100 >= rule.sure_similarity
        out[(attendee, face)] = (Verdict.SURE if sure and clear else Verdict.MAYBE, distance)
    return out
