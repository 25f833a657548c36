"""Writing faces and selfie matches, incrementally in both directions, idempotently.

Each write runs in one transaction that first bumps ``events.match_version``: that row lock
serialises matching per event, so a photo and a selfie finishing together never miss each other.
Local faces are matched here with numpy; a collection engine (Rekognition) searches itself and
hands over its hits, which are written under the same lock and rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, delete, insert, select, update

from snapmatch import db
from snapmatch.errors import SnapmatchError
from snapmatch.faces import DetectedFace, embedding_from_bytes, embedding_to_bytes, match_distances
from snapmatch.schema import PhotoStatus, SelfieStatus, events, faces, matches, photos, selfies


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


def _vector_matches(
    conn: Connection, event_id: int, detected: list[DetectedFace], face_ids: list[int], threshold: float
):  # type: ignore[no-untyped-def]
    ready = conn.execute(
        select(selfies.c.id, selfies.c.embedding).where(
            selfies.c.event_id == event_id, selfies.c.status == SelfieStatus.READY.value
        )
    ).all()
    if not ready or not detected:
        return
    gallery = np.stack([f.embedding for f in detected]).astype(np.float32)
    for selfie in ready:
        distances = match_distances(embedding_from_bytes(selfie.embedding), gallery)
        for index in np.flatnonzero(distances <= threshold):
            yield selfie.id, face_ids[int(index)], float(distances[index])


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
    with db.transaction() as conn:
        lock_event(conn, event_id)
        conn.execute(delete(matches).where(matches.c.photo_id == photo_id))
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
        found = (
            _vector_matches(conn, event_id, detected, face_ids, threshold)
            if provider_hits is None
            else _provider_matches(conn, event_id, provider_hits, face_ids)
        )
        rows = [
            {"selfie_id": s, "face_id": f, "photo_id": photo_id, "event_id": event_id, "distance": d}
            for s, f, d in found
        ]
        if rows:
            conn.execute(insert(matches), rows)
        matched_users = (
            conn.execute(select(selfies.c.user_id).where(selfies.c.id.in_({r["selfie_id"] for r in rows})))
            .scalars()
            .all()
            if rows
            else []
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
    return MatchResult(face_ids=face_ids, matched_user_ids=sorted(set(matched_users)))


def write_selfie_matches(
    *,
    selfie_id: int,
    event_id: int,
    image_key: str,
    threshold: float,
    embedding: np.ndarray | None = None,
    provider_face_id: str | None = None,
    provider_hits: list[ProviderHit] | None = None,
) -> int | None:
    """Mark the selfie ready and (re)write its matches against every face of the event.

    Local: ``embedding`` is compared with every stored descriptor. Collection engine: ``provider_hits``
    (photo faces by provider id) are mapped to face rows; a hit on a photo still being written
    raises ``PhotosInFlight`` so the job matches again once that photo is committed.
    Returns the number of matches, or None when the selfie was replaced meanwhile.
    """
    with db.transaction() as conn:
        lock_event(conn, event_id)
        current = conn.execute(select(selfies.c.image_key).where(selfies.c.id == selfie_id)).scalar()
        if current != image_key:
            return None
        conn.execute(delete(matches).where(matches.c.selfie_id == selfie_id))
        rows = []
        if embedding is not None:
            probe = np.asarray(embedding, dtype=np.float32)
            gallery_rows = conn.execute(
                select(faces.c.id, faces.c.photo_id, faces.c.embedding).where(
                    faces.c.event_id == event_id, faces.c.provider_face_id.is_(None)
                )
            ).all()
            if gallery_rows:
                gallery = np.frombuffer(b"".join(r.embedding for r in gallery_rows), dtype=np.float32).reshape(
                    len(gallery_rows), -1
                )
                distances = match_distances(probe, gallery)
                for index in np.flatnonzero(distances <= threshold):
                    face = gallery_rows[int(index)]
                    rows.append((face.id, face.photo_id, float(distances[index])))
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
        if rows:
            conn.execute(
                insert(matches),
                [
                    {"selfie_id": selfie_id, "face_id": f, "photo_id": p, "event_id": event_id, "distance": d}
                    for f, p, d in rows
                ],
            )
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
    return len(rows)
