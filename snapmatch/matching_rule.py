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
  A face within ``link`` of a reference is never vetoed so (as close as two photos of one person).
* **Sure, through the group**: the face is within ``reach`` of the attendee and its group is the
  attendee's: the group's median distance to the attendee is at most ``group_median``, no other
  attendee has a sure face in it, and the attendee never said "not me" to one of its photos. That
  is how a photo far from the selfie (years apart, other light) joins.
* **Sure, through the attendee's own photos** (a lone photo: nobody else's face is like it): the
  face is the attendee's by the margin and within ``threshold`` of their references, and it is within
  ``centre`` of the mean of their references and of the faces already theirs by the rules above (the
  mean of several photos of a person estimates them better than one selfie; a look-alike is close
  to one photo, rarely to the mean), and no face like it (within ``link``, any photo) is someone
  else's: another attendee's, or beyond ``threshold`` of this attendee. A small face must also be
  within ``sure``.
* **Maybe**: otherwise, when the face is within ``threshold`` (the do-it-yourself rule's 0.6) of
  its closest attendee (even without the margin): shown apart, never as theirs until they confirm.
* **Corrections** win: "not me" hides the photo for that attendee and the faces they rejected
  count as evidence against similar faces (a face closer to a rejected face than to the
  attendee's references is not theirs); "is me" makes the photo theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Verdict(StrEnum):
    SURE = "sure"
    MAYBE = "maybe"


class Basis(StrEnum):
    """Why a face is sure (stored with the match: ``CENTRE`` ones never count as evidence)."""

    DIRECT = "direct"
    GROUP = "group"
    IS_ME = "is_me"
    CENTRE = "centre"


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
    # A lone face within ``threshold`` is sure when it is this close to the mean of the attendee's
    # references and sure faces (measured: faces-dev impostors >= 0.534 once the veto applies).
    centre: float = 0.52
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
            centre=base.centre + shift,
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
    basis: Basis | None = None  # why it is sure (None for maybe)


@dataclass(frozen=True)
class Outside:
    """Faces of the event that are not among those given to ``decide`` (the service re-decides a
    few groups at a time; the bench gives every face at once and needs none of this).

    ``own(attendee)``: (photo ids, descriptors) of the attendee's faces sure by the direct, group or
    is-me rule. ``near(probes)``: for each row of ``probes``, (descriptors, owners) of the faces within
    ``link`` of it, the owner being the attendee they are sure for by those rules, or None (one call
    for every probe: a search of a large event costs about the same for one probe as for many)."""

    own: Callable[[int], tuple[np.ndarray, np.ndarray]]
    near: Callable[[np.ndarray], list[tuple[np.ndarray, list[int | None]]]]


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
    outside: Outside | None = None,
) -> list[FaceDecision]:
    """Sure and maybe faces per attendee, for the given faces (whole groups: the decision for a
    face reads its whole group, so callers pass every face of each group they re-decide; what the
    rule reads beyond them comes from ``outside``)."""
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
                decisions.append(FaceDecision(int(i), a, Verdict.SURE, float(d1[i]), Basis.IS_ME))
                continue
            # A face within ``link`` of a reference is as close as two photos of one person: not a
            # look-alike on a borderline face, whatever its neighbours are.
            stranger_group = (
                direct[i] and d1[i] > rule.link and _among_strangers(i, members, descriptors, dist[k], rule)
            )
            joins_group = group_is_theirs and k == group_owner and d1[i] <= rule.reach
            if direct[i] and not stranger_group:
                decisions.append(FaceDecision(int(i), a, Verdict.SURE, float(d1[i]), Basis.DIRECT))
            elif joins_group:
                decisions.append(FaceDecision(int(i), a, Verdict.SURE, float(d1[i]), Basis.GROUP))
            elif d1[i] <= rule.threshold:
                # Borderline, or too close to call between two attendees: offered to the closest.
                decisions.append(FaceDecision(int(i), a, Verdict.MAYBE, float(d1[i])))
    runner_up = [ids[int(order[1][i])] if len(ids) > 1 else None for i in range(n)]
    return _promote_lone_faces(decisions, descriptors, photos, small, attendees, rule, clear, runner_up, outside)


def _promote_lone_faces(
    decisions: list[FaceDecision],
    descriptors: np.ndarray,
    photos: np.ndarray,
    small: np.ndarray,
    attendees: Mapping[int, Attendee],
    rule: MatchRule,
    clear: np.ndarray,
    runner_up: Sequence[int | None],
    outside: Outside | None,
) -> list[FaceDecision]:
    """Maybe faces that the attendee's own photos vouch for become sure (``Basis.CENTRE``).

    Evidence is only what the other rules made sure (never a face promoted here), so the outcome
    does not depend on the order photos arrive in."""
    # A small face's descriptor is vaguer: it needs both this test and to be within ``sure``. (An
    # excluded face, "not me", is never a maybe.)
    candidates = [d for d in decisions if d.verdict is Verdict.MAYBE and (not small[d.face] or d.distance <= rule.sure)]
    if not candidates:
        return decisions
    owner: dict[int, int] = {d.face: d.attendee for d in decisions if d.verdict is Verdict.SURE}
    own_here: dict[int, list[int]] = {}
    for face, attendee in owner.items():
        own_here.setdefault(attendee, []).append(face)
    own_outside: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def to_centre(a: int, i: int) -> float | None:
        refs = attendees[a].references
        if a not in own_outside:
            own_outside[a] = outside.own(a) if outside else (np.zeros(0, np.int64), np.zeros((0, refs.shape[1])))
        out_photos, out_vectors = own_outside[a]
        here = [j for j in own_here.get(a, []) if photos[j] != photos[i]]
        evidence = np.concatenate([refs, descriptors[here], out_vectors[out_photos != photos[i]]])
        if len(evidence) < 2:  # one selfie alone is no more than the direct rule already read
            return None
        return float(np.linalg.norm(descriptors[i] - evidence.mean(axis=0)))

    vouched: list[FaceDecision] = []
    for d in candidates:
        i, a = d.face, d.attendee
        mine = to_centre(a, i)
        if mine is None or mine > rule.centre:
            continue
        if not clear[i]:
            # Too close to call on the references alone: the attendee's own photos must lead the
            # runner-up's (their references and their own photos) by the margin.
            b = runner_up[i]
            refs_b = pairwise(attendees[b].references, descriptors[i : i + 1]).min()
            theirs = to_centre(b, i)
            if min(float(refs_b), theirs if theirs is not None else np.inf) - mine < rule.margin:
                continue
        vouched.append(d)
    if not vouched:
        return decisions
    beyond = outside.near(descriptors[[d.face for d in vouched]]) if outside else [None] * len(vouched)
    promoted: dict[int, FaceDecision] = {}
    for d, found in zip(vouched, beyond, strict=True):
        if not _someone_else_alike(d.face, d.attendee, descriptors, owner, attendees, rule, found):
            promoted[d.face] = FaceDecision(d.face, d.attendee, Verdict.SURE, d.distance, Basis.CENTRE)
    if not promoted:
        return decisions
    return [promoted.get(d.face, d) if d.verdict is Verdict.MAYBE else d for d in decisions]


def _someone_else_alike(
    face: int,
    attendee: int,
    descriptors: np.ndarray,
    owner: Mapping[int, int],
    attendees: Mapping[int, Attendee],
    rule: MatchRule,
    beyond: tuple[np.ndarray, list[int | None]] | None,
) -> bool:
    """A face within ``link`` of this one (any photo: a collage holds one person many times; ``beyond``:
    those outside the decided faces) is another attendee's, or nobody's and beyond ``threshold`` of
    this attendee: someone else."""
    close = pairwise(descriptors[face : face + 1], descriptors)[0] <= rule.link
    close[face] = False
    vectors = [descriptors[close]]
    owners: list[int | None] = [owner.get(int(j)) for j in np.flatnonzero(close)]
    if beyond is not None:
        vectors.append(beyond[0])
        owners += beyond[1]
    near = np.concatenate(vectors)
    if not len(near):
        return False
    if any(o is not None and o != attendee for o in owners):
        return True
    to_attendee = pairwise(attendees[attendee].references, near).min(axis=0)
    return any(o is None and float(t) > rule.threshold for o, t in zip(owners, to_attendee, strict=True))


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
