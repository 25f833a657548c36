"""Writing faces and selfie matches, incrementally in both directions, idempotently.

Each write runs in one transaction that first bumps ``events.match_version``: that row lock
serialises matching per event, so a photo and a selfie finishing together never miss each other.
Local faces are matched here with numpy; a collection engine (Rekognition) searches itself and
hands over its hits, which are written under the same lock and rules.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update

from snapmatch import db
from snapmatch.errors import SnapmatchError
from snapmatch.faces import DetectedFace, embedding_to_bytes
from snapmatch.matching_rule import (
    Attendee,
    Basis,
    MatchRule,
    Outside,
    ProviderRule,
    Verdict,
    decide,
    decide_provider_hits,
    join_groups,
    pairwise,
)
from snapmatch.schema import (
    CorrectionVerdict,
    PhotoStatus,
    SelfieStatus,
    events,
    face_groups,
    faces,
    match_corrections,
    matches,
    maybe_matches,
    photos,
    selfie_references,
    selfies,
)


@dataclass(frozen=True)
class MatchResult:
    face_ids: list[int]
    matched_user_ids: list[int]


@dataclass(frozen=True)
class ProviderHit:
    """A collection engine's search result, by the provider's face ids."""

    selfie_id: int | None  # for a photo face: the selfie whose face matched
    photo_id: int | None  # for a selfie: the photo whose face matched
    provider_face_id: str  # the matched face in the collection
    distance: float  # 1 - similarity, so smaller is closer as for local descriptors


class PhotosInFlight(SnapmatchError):
    """The selfie matched faces of photos whose rows are not written yet: match again shortly."""

    code = "photos_in_flight"
    status = 409


def lock_event(conn: Connection, event_id: int) -> None:
    """Take the event's matching lock: the first statement of every transaction that writes faces,
    selfies or matches of the event (a row lock on PostgreSQL, the write lock on SQLite)."""
    conn.execute(update(events).where(events.c.id == event_id).values(match_version=events.c.match_version + 1))


# ---- the event's faces in memory, for neighbour search ---------------------------------------


@dataclass
class EventIndex:
    """The event's local face descriptors, kept per process to find a new face's neighbours in one
    matrix product instead of reading every descriptor of the event on each job.

    A cache, never the truth: refreshed with the faces whose id is above the last one seen (ids only
    grow), and stale entries (faces deleted by a re-run) are harmless because every neighbour found
    is looked up in ``face_groups`` before it is used.
    """

    size: int = 0
    last_id: int = 0
    # Storage with spare room (doubled when full), so a job's few new faces are not a copy of the
    # whole event; the public arrays below are views of the filled part.
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _photos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _widths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 128), np.float32))
    _squares: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # |v|^2 per row

    @property
    def face_ids(self) -> np.ndarray:
        return self._ids[: self.size]

    @property
    def photo_ids(self) -> np.ndarray:
        return self._photos[: self.size]

    @property
    def widths(self) -> np.ndarray:
        return self._widths[: self.size]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.size]

    @property
    def squares(self) -> np.ndarray:
        return self._squares[: self.size]

    def append(
        self, face_ids: Sequence[int], photo_ids: Sequence[int], widths: Sequence[float], vectors: np.ndarray
    ) -> None:
        count = len(face_ids)
        if not count:
            return
        added = np.asarray(vectors, np.float32).reshape(count, -1)
        if self.size + count > len(self._ids):
            capacity = max(2 * len(self._ids), self.size + count, 1024)
            self._ids = _grown(self._ids, capacity, self.size)
            self._photos = _grown(self._photos, capacity, self.size)
            self._widths = _grown(self._widths, capacity, self.size)
            self._vectors = _grown(self._vectors, capacity, self.size, added.shape[1])
            self._squares = _grown(self._squares, capacity, self.size)
        rows = slice(self.size, self.size + count)
        self._ids[rows] = np.asarray(face_ids, np.int64)
        self._photos[rows] = np.asarray(photo_ids, np.int64)
        self._widths[rows] = np.asarray(widths, np.float32)
        self._vectors[rows] = added
        self._squares[rows] = np.einsum("ij,ij->i", added, added)
        self.size += count
        self.last_id = max(self.last_id, int(max(face_ids)))

    def refresh(self, conn: Connection, event_id: int) -> None:
        self._append_new(conn, event_id)
        # Faces deleted by a re-run leave stale rows, and SQLite gives a deleted last id to the next
        # face (so "above the last id seen" would miss it): when the counts differ, read it all again.
        stored = conn.execute(
            select(func.count()).where(faces.c.event_id == event_id, faces.c.provider_face_id.is_(None))
        ).scalar_one()
        if stored != self.size:
            self.size = self.last_id = 0  # the buffers are kept and filled again
            self._append_new(conn, event_id)

    def _append_new(self, conn: Connection, event_id: int) -> None:
        rows = conn.execute(
            select(faces.c.id, faces.c.photo_id, faces.c.width, faces.c.embedding)
            .where(faces.c.event_id == event_id, faces.c.id > self.last_id, faces.c.provider_face_id.is_(None))
            .order_by(faces.c.id)
        ).all()
        if rows:
            self.append(
                [r.id for r in rows],
                [r.photo_id for r in rows],
                [r.width for r in rows],
                np.frombuffer(b"".join(r.embedding for r in rows), np.float32).reshape(len(rows), -1),
            )

    def linked(self, vectors: np.ndarray, widths: Sequence[float], photo_id: int, rule: MatchRule) -> list[set[int]]:
        """For each given face: ids of indexed faces it links to (``rule.link``, other photos, not small)."""
        out: list[set[int]] = [set() for _ in range(len(vectors))]
        if self.size == 0 or len(vectors) == 0:
            return out
        close = self._within(np.asarray(vectors, np.float32), rule.link)
        ok = (self.photo_ids != photo_id) & (self.widths >= rule.small_face_px)
        for i, width in enumerate(widths):
            if width >= rule.small_face_px:
                out[i] = {int(f) for f in self.face_ids[close[:, i] & ok]}
        return out

    def _within(self, probes: np.ndarray, radius: float) -> np.ndarray:
        """(size, len(probes)) booleans: |v - p| <= radius, as 2 v.p >= |v|^2 + |p|^2 - r^2 (one
        matrix product over the index, no square roots)."""
        return _close(self.vectors, self.squares, np.asarray(probes, np.float32), radius)

    def near(self, references: np.ndarray, reach: float) -> set[int]:
        """Ids of indexed faces within ``reach`` of any reference."""
        if self.size == 0 or len(references) == 0:
            return set()
        return {int(f) for f in self.face_ids[self._within(np.asarray(references, np.float32), reach).any(axis=1)]}

    def within_each(self, probes: np.ndarray, radius: float) -> list[list[int]]:
        """For each probe, the ids of indexed faces within ``radius`` of it (one matrix product)."""
        if self.size == 0:
            return [[] for _ in range(len(probes))]
        close = self._within(np.asarray(probes, np.float32), radius)
        return [[int(f) for f in self.face_ids[close[:, k]]] for k in range(len(probes))]


def _close(vectors: np.ndarray, squares: np.ndarray, probes: np.ndarray, radius: float) -> np.ndarray:
    dots = vectors @ probes.T
    return 2 * dots >= squares[:, None] + np.einsum("ij,ij->i", probes, probes)[None, :] - radius * radius


def _grown(array: np.ndarray, capacity: int, used: int, width: int | None = None) -> np.ndarray:
    shape = (capacity,) if width is None else (capacity, width)
    out = np.zeros(shape, array.dtype)
    out[:used] = array[:used]
    return out


_INDEX_LIMIT = 16  # events kept in memory per process
_indexes: OrderedDict[int, EventIndex] = OrderedDict()
_indexes_lock = threading.Lock()


def _event_index(conn: Connection, event_id: int) -> EventIndex:
    """The refreshed index of the event (the caller holds the event lock, so no writer races it)."""
    with _indexes_lock:
        index = _indexes.pop(event_id, None) or EventIndex()
        _indexes[event_id] = index
        while len(_indexes) > _INDEX_LIMIT:
            _indexes.popitem(last=False)
    index.refresh(conn, event_id)
    return index


def forget_event_index(event_id: int) -> None:
    with _indexes_lock:
        _indexes.pop(event_id, None)


# ---- the event-wide rule, applied to the groups a change touches ------------------------------


def _chunks(values: Sequence[int], size: int = 500) -> Iterable[list[int]]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _stack(blobs: list[bytes]) -> np.ndarray | None:
    return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), -1) if blobs else None


def load_attendees(conn: Connection, event_id: int) -> tuple[dict[int, Attendee], dict[int, int]]:
    """Every attendee of the event with a ready local selfie: user id -> evidence; and user -> selfie id."""
    ready = conn.execute(
        select(selfies.c.id, selfies.c.user_id, selfies.c.embedding).where(
            selfies.c.event_id == event_id,
            selfies.c.status == SelfieStatus.READY.value,
            selfies.c.embedding.is_not(None),
        )
    ).all()
    selfie_of = {r.user_id: r.id for r in ready}
    user_of = {r.id: r.user_id for r in ready}
    refs: dict[int, list[bytes]] = {r.user_id: [r.embedding] for r in ready}
    for r in conn.execute(
        select(selfie_references.c.selfie_id, selfie_references.c.embedding)
        .join(selfies, selfies.c.id == selfie_references.c.selfie_id)
        .where(
            selfies.c.event_id == event_id,
            selfie_references.c.status == SelfieStatus.READY.value,
            selfie_references.c.embedding.is_not(None),
        )
    ):
        if r.selfie_id in user_of:
            refs[user_of[r.selfie_id]].append(r.embedding)
    rejected: dict[int, list[bytes]] = {}
    not_me: dict[int, set[int]] = {}
    is_me: dict[int, set[int]] = {}
    for r in conn.execute(select(match_corrections).where(match_corrections.c.event_id == event_id)):
        if r.user_id not in refs:
            continue
        if r.verdict == CorrectionVerdict.NOT_ME.value:
            not_me.setdefault(r.user_id, set()).add(r.photo_id)
            if r.embedding:
                rejected.setdefault(r.user_id, []).append(r.embedding)
        else:
            is_me.setdefault(r.user_id, set()).add(r.photo_id)
            if r.embedding:
                refs[r.user_id].append(r.embedding)
    attendees = {
        user: Attendee(
            references=_stack(blobs),  # type: ignore[arg-type]
            rejected=_stack(rejected.get(user, [])),
            not_me_photos=frozenset(not_me.get(user, ())),
            is_me_photos=frozenset(is_me.get(user, ())),
        )
        for user, blobs in refs.items()
    }
    return attendees, selfie_of


def _held(conn: Connection, table, face_ids: Sequence[int]) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """(selfie_id, face_id) rows of ``table`` (matches or maybe_matches) on these faces."""
    out: set[tuple[int, int]] = set()
    for chunk in _chunks(face_ids):
        query = select(table.c.selfie_id, table.c.face_id).where(table.c.face_id.in_(chunk))
        out |= {(int(r.selfie_id), int(r.face_id)) for r in conn.execute(query)}
    return out


def _outside(
    conn: Connection, event_id: int, member_ids: Sequence[int], selfie_of: dict[int, int], rule: MatchRule
) -> Outside:
    """What the rule reads beyond the re-decided groups, from the stored matches and the event index.

    Evidence is what the direct, group and is-me rules made sure (``basis`` is not ``centre``)."""
    members = set(member_ids)
    evidence = matches.c.basis.is_(None) | (matches.c.basis != Basis.CENTRE.value)
    user_of = {s: u for u, s in selfie_of.items()}

    def own(attendee: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [
            r
            for r in conn.execute(
                select(faces.c.id, faces.c.photo_id, faces.c.embedding)
                .join(matches, matches.c.face_id == faces.c.id)
                .where(matches.c.selfie_id == selfie_of[attendee], evidence)
            )
            if r.id not in members
        ]
        vectors = _stack([r.embedding for r in rows])
        return np.asarray([r.photo_id for r in rows], np.int64), (
            vectors if vectors is not None else np.zeros((0, 128), np.float32)
        )

    def near(probes: np.ndarray) -> list[tuple[np.ndarray, list[int | None]]]:
        index = _event_index(conn, event_id)
        hits = [set(ids) - members for ids in index.within_each(probes, rule.link)]
        found = sorted(set().union(*hits))
        vector_of: dict[int, np.ndarray] = {}
        owner_of: dict[int, int | None] = {}
        for chunk in _chunks(found):
            for r in conn.execute(
                select(matches.c.face_id, matches.c.selfie_id).where(matches.c.face_id.in_(chunk), evidence)
            ):
                owner_of[r.face_id] = user_of.get(r.selfie_id)
            for r in conn.execute(select(faces.c.id, faces.c.embedding).where(faces.c.id.in_(chunk))):
                vector_of[r.id] = np.frombuffer(r.embedding, np.float32)
        out = []
        for probe, ids in zip(probes, hits, strict=True):
            # The index is a cache: keep only faces that still exist and are really that close.
            kept = [f for f in sorted(ids) if f in vector_of and np.linalg.norm(vector_of[f] - probe) <= rule.link]
            vectors = np.stack([vector_of[f] for f in kept]) if kept else np.zeros((0, probes.shape[1]), np.float32)
            out.append((vectors, [owner_of.get(f) for f in kept]))
        return out

    return Outside(own=own, near=near)


def _redecide_groups(
    conn: Connection, event_id: int, group_ids: set[int], rule: MatchRule, *, follow: bool = True
) -> set[int]:
    """Apply the rule to every face of the given groups and rewrite their matches and maybes.

    When an attendee's evidence changes (faces made theirs by the direct, group or is-me rule),
    their maybe and ``centre`` faces elsewhere are re-decided too (``follow``): those read the
    mean of that evidence. Returns the users whose photos or maybes changed (their caches must go)."""
    if not group_ids:
        return set()
    members = []
    for chunk in _chunks(sorted(group_ids)):
        members += conn.execute(
            select(faces.c.id, faces.c.photo_id, faces.c.width, faces.c.embedding, face_groups.c.group_id)
            .join(face_groups, face_groups.c.face_id == faces.c.id)
            .where(face_groups.c.event_id == event_id, face_groups.c.group_id.in_(chunk))
        ).all()
    if not members:
        return set()
    face_ids = [m.id for m in members]
    attendees, selfie_of = load_attendees(conn, event_id)
    decisions = decide(
        _stack([m.embedding for m in members]),  # type: ignore[arg-type]
        [m.photo_id for m in members],
        [float(m.width) for m in members],
        [m.group_id for m in members],
        attendees,
        rule,
        _outside(conn, event_id, face_ids, selfie_of, rule),
    )
    basis = {
        (selfie_of[d.attendee], face_ids[d.face]): d.basis.value if d.basis else None
        for d in decisions
        if d.verdict is Verdict.SURE
    }
    new_sure = set(basis)
    new_maybe = {(selfie_of[d.attendee], face_ids[d.face]) for d in decisions if d.verdict is Verdict.MAYBE}
    old_basis = _held_basis(conn, face_ids)
    old_sure = set(old_basis)
    old_maybe = _held(conn, maybe_matches, face_ids)
    if basis == old_basis and new_maybe == old_maybe:
        return set()
    by_face = {m.id: m for m in members}
    distance = {(selfie_of[d.attendee], face_ids[d.face]): d.distance for d in decisions}
    # A face held for the same selfie on another basis is rewritten (its basis decides if it is evidence).
    rebased = {key for key in old_sure & new_sure if old_basis[key] != basis[key]}
    for table, old, new in ((matches, old_sure, new_sure), (maybe_matches, old_maybe, new_maybe)):
        extra = rebased if table is matches else set()
        for selfie_id, face_id in (old - new) | extra:
            conn.execute(delete(table).where(table.c.selfie_id == selfie_id, table.c.face_id == face_id))
        added = [
            {
                "selfie_id": s,
                "face_id": f,
                "photo_id": by_face[f].photo_id,
                "event_id": event_id,
                "distance": distance[(s, f)],
                **({"basis": basis[(s, f)]} if table is matches else {}),
            }
            for s, f in (new - old) | extra
        ]
        if added:
            conn.execute(insert(table), added)
    changed_selfies = {s for s, _ in (old_sure ^ new_sure) | (old_maybe ^ new_maybe)}
    changed = (
        set(conn.execute(select(selfies.c.user_id).where(selfies.c.id.in_(changed_selfies))).scalars().all())
        if changed_selfies
        else set()
    )
    if follow:
        evidence_before = {k for k, b in old_basis.items() if b != Basis.CENTRE.value}
        evidence_after = {k for k, b in basis.items() if b != Basis.CENTRE.value}
        moved = {s for s, _ in evidence_before ^ evidence_after}
        changed |= _redecide_groups(conn, event_id, _groups_reading(conn, moved) - group_ids, rule, follow=False)
    return changed


def _held_basis(conn: Connection, face_ids: Sequence[int]) -> dict[tuple[int, int], str | None]:
    out: dict[tuple[int, int], str | None] = {}
    for chunk in _chunks(face_ids):
        query = select(matches.c.selfie_id, matches.c.face_id, matches.c.basis).where(matches.c.face_id.in_(chunk))
        out.update({(int(r.selfie_id), int(r.face_id)): r.basis for r in conn.execute(query)})
    return out


def _groups_reading(conn: Connection, selfie_ids: set[int]) -> set[int]:
    """Groups holding a maybe or a ``centre`` face of these selfies: their decision reads the mean
    of the selfie's evidence."""
    face_ids: set[int] = set()
    for chunk in _chunks(sorted(selfie_ids)):
        face_ids |= set(
            conn.execute(select(maybe_matches.c.face_id).where(maybe_matches.c.selfie_id.in_(chunk))).scalars()
        )
        face_ids |= set(
            conn.execute(
                select(matches.c.face_id).where(matches.c.selfie_id.in_(chunk), matches.c.basis == Basis.CENTRE.value)
            ).scalars()
        )
    return _groups_of(conn, face_ids)


def _groups_of(conn: Connection, face_ids: set[int]) -> set[int]:
    """The groups these faces are in."""
    groups: set[int] = set()
    for chunk in _chunks(sorted(face_ids)):
        groups |= set(conn.execute(select(face_groups.c.group_id).where(face_groups.c.face_id.in_(chunk))).scalars())
    return groups


def _group_new_faces(
    conn: Connection, event_id: int, photo_id: int, face_ids: list[int], detected: list[DetectedFace], rule: MatchRule
) -> set[int]:
    """Link the photo's new faces into the event's groups (merging groups they bridge); returns the
    group ids to re-decide."""
    if not face_ids:
        return set()
    index = _event_index(conn, event_id)
    vectors = np.stack([f.embedding for f in detected]).astype(np.float32)
    widths = [float(f.width) for f in detected]
    linked = index.linked(vectors, widths, photo_id, rule)
    wanted = sorted(set().union(*linked) - set(face_ids))
    # The index is a cache: its neighbours are checked against the stored descriptors (SQLite may
    # reuse the id of a deleted face, so a cached vector could belong to a face that is gone).
    group_of: dict[int, int] = {}
    stored: dict[int, np.ndarray] = {}
    for chunk in _chunks(wanted):
        for r in conn.execute(
            select(face_groups.c.face_id, face_groups.c.group_id, faces.c.embedding)
            .join(faces, faces.c.id == face_groups.c.face_id)
            .where(face_groups.c.face_id.in_(chunk))
        ):
            group_of[r.face_id] = r.group_id
            stored[r.face_id] = np.frombuffer(r.embedding, np.float32)
    for i, neighbours in enumerate(linked):
        known = [n for n in neighbours if n in stored]
        if known:
            close = pairwise(vectors[i : i + 1], np.stack([stored[n] for n in known]))[0] <= rule.link
            linked[i] = {n for n, ok in zip(known, close, strict=True) if ok}
        else:
            linked[i] = set()
    sizes: dict[int, int] = {}
    for chunk in _chunks(sorted(set(group_of.values()))):
        sizes.update(
            conn.execute(
                select(face_groups.c.group_id, func.count())
                .where(face_groups.c.event_id == event_id, face_groups.c.group_id.in_(chunk))
                .group_by(face_groups.c.group_id)
            ).all()
        )
    touched: set[int] = set()
    for face_id, neighbours in zip(face_ids, linked, strict=True):
        links = Counter(group_of[n] for n in neighbours if n in group_of)
        target, merged = join_groups(links, sizes, face_id, rule)
        sizes[target] = sizes.get(target, 0) + 1 + sum(sizes.pop(g, 0) for g in merged)
        if merged:
            conn.execute(
                update(face_groups)
                .where(face_groups.c.event_id == event_id, face_groups.c.group_id.in_(merged))
                .values(group_id=target)
            )
            group_of = {f: (target if g in merged else g) for f, g in group_of.items()}
            touched -= merged
        conn.execute(insert(face_groups).values(face_id=face_id, event_id=event_id, group_id=target))
        touched.add(target)
    return touched


def held_groups(conn: Connection, selfie_id: int) -> set[int]:
    """Groups of the faces a selfie holds (sure or maybe): read before the selfie lets them go."""
    face_ids: set[int] = set()
    for table in (matches, maybe_matches):
        face_ids |= set(conn.execute(select(table.c.face_id).where(table.c.selfie_id == selfie_id)).scalars())
    return _groups_of(conn, face_ids)


def release_groups(conn: Connection, event_id: int, groups: set[int], threshold: float) -> set[int]:
    """Re-decide the groups a deleted or replaced selfie held (from ``held_groups``), once its rows
    are gone: the runner-up attendee of a face it held may now have it. Call under the event lock;
    returns the users whose photos changed."""
    return _redecide_groups(conn, event_id, groups, MatchRule.from_threshold(threshold))


def rematch_attendee(conn: Connection, event_id: int, user_id: int, rule: MatchRule) -> set[int]:
    """Re-decide every group the attendee's evidence can reach or already holds (a new selfie or
    reference photo, a correction). Call under the event lock; returns the users whose photos changed."""
    attendees, selfie_of = load_attendees(conn, event_id)
    candidates: set[int] = set()
    if user_id in attendees:
        candidates = _event_index(conn, event_id).near(attendees[user_id].references, rule.reach)
    selfie_id = conn.execute(
        select(selfies.c.id).where(selfies.c.event_id == event_id, selfies.c.user_id == user_id)
    ).scalar()
    groups = _groups_of(conn, candidates) | (held_groups(conn, selfie_id) if selfie_id is not None else set())
    return _redecide_groups(conn, event_id, groups, rule) | {user_id}


def _provider_matches(conn: Connection, event_id: int, hits: dict[int, list[ProviderHit]], face_ids: list[int]):  # type: ignore[no-untyped-def]
    # Only hits on a selfie's *current* face count: a replaced selfie's old face may still be searchable.
    current = dict(
        conn.execute(
            select(selfies.c.provider_face_id, selfies.c.id).where(
                selfies.c.event_id == event_id, selfies.c.provider_face_id.is_not(None)
            )
        ).all()
    )
    for index, face_hits in hits.items():
        for hit in face_hits:
            if current.get(hit.provider_face_id) == hit.selfie_id:
                yield hit.selfie_id, face_ids[index], hit.distance


def write_photo_faces(
    *,
    photo_id: int,
    event_id: int,
    detected: list[DetectedFace],
    threshold: float,
    photo_values: dict[str, object],
    provider_face_ids: list[str] | None = None,
    provider_hits: dict[int, list[ProviderHit]] | None = None,
) -> MatchResult:
    """Replace the photo's faces, match them against the event's selfies, mark the photo done.

    Without ``provider_hits`` faces are matched by descriptor distance against ready selfies;
    with them (face index -> hits) the collection engine's search results are written.
    """
    rule = MatchRule.from_threshold(threshold)
    with db.transaction() as conn:
        lock_event(conn, event_id)
        # Whoever held this photo before a re-run must see the change too.
        before: set[int] = set()
        for table in (matches, maybe_matches):
            before |= set(
                conn.execute(
                    select(selfies.c.user_id)
                    .join(table, table.c.selfie_id == selfies.c.id)
                    .where(table.c.photo_id == photo_id)
                ).scalars()
            )
        conn.execute(delete(matches).where(matches.c.photo_id == photo_id))
        conn.execute(delete(maybe_matches).where(maybe_matches.c.photo_id == photo_id))
        old_faces = select(faces.c.id).where(faces.c.photo_id == photo_id).scalar_subquery()
        conn.execute(delete(face_groups).where(face_groups.c.face_id.in_(old_faces)))
        conn.execute(delete(faces).where(faces.c.photo_id == photo_id))
        face_ids: list[int] = []
        for index, face in enumerate(detected):
            face_ids.append(
                conn.execute(
                    insert(faces).values(
                        photo_id=photo_id,
                        event_id=event_id,
                        face_index=index,
                        left=face.left,
                        top=face.top,
                        width=face.width,
                        height=face.height,
                        score=face.score,
                        embedding=embedding_to_bytes(face.embedding),
                        provider_face_id=provider_face_ids[index] if provider_face_ids else None,
                    )
                ).inserted_primary_key[0]
            )
        if provider_hits is None:
            # Local faces: join the event's groups, then re-decide the groups they touched.
            touched = _group_new_faces(conn, event_id, photo_id, face_ids, detected, rule)
            matched_users = _redecide_groups(conn, event_id, touched, rule) | before
        else:
            matched_users = (
                _write_provider_photo_hits(
                    conn, event_id, photo_id, _provider_matches(conn, event_id, provider_hits, face_ids)
                )
                | before
            )
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id)
            .values(
                status=PhotoStatus.DONE.value,
                face_count=len(detected),
                error_code=None,
                error_message=None,
                finished_at=db.utcnow(),
                updated_at=db.utcnow(),
                **photo_values,
            )
        )
    return MatchResult(face_ids=face_ids, matched_user_ids=sorted(matched_users))


def write_selfie_matches(
    *,
    selfie_id: int,
    event_id: int,
    image_key: str,
    threshold: float,
    embedding: np.ndarray | None = None,
    provider_face_id: str | None = None,
    provider_hits: list[ProviderHit] | None = None,
) -> set[int] | None:
    """Mark the selfie ready and (re)write its matches against every face of the event.

    Local: ``embedding`` is compared with every stored descriptor. Collection engine: ``provider_hits``
    (photo faces by provider id) are mapped to face rows; a hit on a photo still being written
    raises ``PhotosInFlight`` so the job matches again once that photo is committed.
    Matches go through the event-wide rules (local: ``matching_rule.decide``; collection engine:
    ``decide_provider_hits``). Returns the users whose photos changed, or None when the selfie was
    replaced meanwhile.
    """
    if embedding is not None:
        return write_local_selfie(
            selfie_id=selfie_id, event_id=event_id, image_key=image_key, threshold=threshold, embedding=embedding
        )
    with db.transaction() as conn:
        lock_event(conn, event_id)
        current = conn.execute(select(selfies.c.image_key).where(selfies.c.id == selfie_id)).scalar()
        if current != image_key:
            return None
        rows = []
        # Map every hit to its face row in one query per 500 hits, not one query per hit: this runs
        # under the event lock, and a selfie can match hundreds of photos.
        hits = provider_hits or []
        known: dict[str, tuple[int, int]] = {}
        for start in range(0, len(hits), 500):
            wanted = [h.provider_face_id for h in hits[start : start + 500]]
            known.update(
                (r.provider_face_id, (r.id, r.photo_id))
                for r in conn.execute(
                    select(faces.c.id, faces.c.photo_id, faces.c.provider_face_id).where(
                        faces.c.provider_face_id.in_(wanted)
                    )
                )
            )
        unmapped = {h.photo_id for h in hits if h.provider_face_id not in known}
        if (
            unmapped
            and conn.execute(
                select(photos.c.id)
                .where(
                    photos.c.id.in_(unmapped),
                    photos.c.status.in_([PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value]),
                )
                .limit(1)
            ).first()
        ):
            raise PhotosInFlight("a matched photo is still being written; matching again shortly")
        # Hits on photos that are not in flight are orphan faces (a crash between indexing and commit).
        rows.extend((*known[h.provider_face_id], h.distance) for h in hits if h.provider_face_id in known)
        user_id = conn.execute(select(selfies.c.user_id).where(selfies.c.id == selfie_id)).scalar()
        changed = _write_provider_selfie_hits(conn, event_id, selfie_id, int(user_id), rows)
        conn.execute(
            update(selfies)
            .where(selfies.c.id == selfie_id)
            .values(
                status=SelfieStatus.READY.value,
                embedding=embedding_to_bytes(embedding) if embedding is not None else None,
                provider_face_id=provider_face_id,
                error_code=None,
                error_message=None,
                updated_at=db.utcnow(),
            )
        )
    return changed


def write_local_selfie(
    *, selfie_id: int, event_id: int, image_key: str, threshold: float, embedding: np.ndarray
) -> set[int] | None:
    """Mark the selfie ready with its descriptor and re-decide every group it can reach.

    Returns the users whose photos changed (the attendee, and any whose faces moved), or None when
    the selfie was replaced meanwhile."""
    rule = MatchRule.from_threshold(threshold)
    with db.transaction() as conn:
        lock_event(conn, event_id)
        row = conn.execute(select(selfies.c.image_key, selfies.c.user_id).where(selfies.c.id == selfie_id)).first()
        if row is None or row.image_key != image_key:
            return None
        conn.execute(
            update(selfies)
            .where(selfies.c.id == selfie_id)
            .values(
                status=SelfieStatus.READY.value,
                embedding=embedding_to_bytes(embedding),
                provider_face_id=None,
                error_code=None,
                error_message=None,
                updated_at=db.utcnow(),
            )
        )
        return rematch_attendee(conn, event_id, row.user_id, rule)


def rematch_attendee_now(event_id: int, user_id: int, threshold: float) -> set[int]:
    """``rematch_attendee`` in its own transaction under the event lock (corrections, references)."""
    with db.transaction() as conn:
        lock_event(conn, event_id)
        return rematch_attendee(conn, event_id, user_id, MatchRule.from_threshold(threshold))


# ---- collection engines (Rekognition): the same rules where they apply ------------------------


def _not_me_photos(conn: Connection, event_id: int) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for user_id, photo_id in conn.execute(
        select(match_corrections.c.user_id, match_corrections.c.photo_id).where(
            match_corrections.c.event_id == event_id,
            match_corrections.c.verdict == CorrectionVerdict.NOT_ME.value,
        )
    ):
        out.setdefault(user_id, set()).add(photo_id)
    return out


def provider_rule() -> ProviderRule:
    from snapmatch.settings import get_settings

    return ProviderRule(sure_similarity=get_settings().REKOGNITION_SURE_SIMILARITY)


def _write_provider_decisions(conn: Connection, event_id: int, hits: list[tuple[int, int, int, float]]) -> set[int]:
    """Hits (selfie_id, face_id, photo_id, distance) on some faces, judged with every other hit on
    those faces already stored: one attendee per face, not-me, sure or maybe. Returns changed users."""
    face_ids = sorted({h[1] for h in hits})
    if not face_ids:
        return set()
    known = list(hits)
    for chunk in _chunks(face_ids):
        for table in (matches, maybe_matches):
            known += [
                (r.selfie_id, r.face_id, r.photo_id, r.distance)
                for r in conn.execute(select(table).where(table.c.face_id.in_(chunk)))
            ]
    user_of = dict(
        conn.execute(select(selfies.c.id, selfies.c.user_id).where(selfies.c.id.in_({h[0] for h in known}))).all()
    )
    verdicts = decide_provider_hits(
        [(user_of[s], f, p, d) for s, f, p, d in known if s in user_of], _not_me_photos(conn, event_id), provider_rule()
    )
    selfie_of = {u: s for s, u in user_of.items()}
    photo_of = {f: p for _, f, p, _ in known}
    changed: set[int] = set()
    for chunk in _chunks(face_ids):
        for table in (matches, maybe_matches):
            old = {
                (r.selfie_id, r.face_id)
                for r in conn.execute(select(table.c.selfie_id, table.c.face_id).where(table.c.face_id.in_(chunk)))
            }
            want = Verdict.SURE if table is matches else Verdict.MAYBE
            new = {(selfie_of[u], f) for (u, f), (v, _) in verdicts.items() if v is want and f in set(chunk)}
            for s, f in old - new:
                conn.execute(delete(table).where(table.c.selfie_id == s, table.c.face_id == f))
            added = [
                {
                    "selfie_id": s,
                    "face_id": f,
                    "photo_id": photo_of[f],
                    "event_id": event_id,
                    "distance": verdicts[(user_of[s], f)][1],
                }
                for s, f in new - old
            ]
            if added:
                conn.execute(insert(table), added)
            changed |= {user_of[s] for s, _ in old ^ new}
    return changed


def _write_provider_photo_hits(
    conn: Connection, event_id: int, photo_id: int, found: Iterable[tuple[int, int, float]]
) -> set[int]:
    return _write_provider_decisions(conn, event_id, [(s, f, photo_id, d) for s, f, d in found])


def _write_provider_selfie_hits(
    conn: Connection,
    event_id: int,
    selfie_id: int,
    user_id: int,
    rows: list[tuple[int, int, float]],
) -> set[int]:
    held: set[int] = set()
    for table in (matches, maybe_matches):
        held |= set(conn.execute(select(table.c.face_id).where(table.c.selfie_id == selfie_id)).scalars())
        conn.execute(delete(table).where(table.c.selfie_id == selfie_id))
    changed = _write_provider_decisions(conn, event_id, [(selfie_id, f, p, d) for f, p, d in rows])
    return changed | {user_id}
