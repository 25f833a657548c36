"""Writing faces and selfie matches, incrementally in both directions, idempotently.

Each write runs in one transaction that first bumps ``events.match_version``: that row lock
serialises matching per event, so a photo and a selfie finishing together never miss each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, delete, insert, select, update

from snapmatch import db
from snapmatch.faces import DetectedFace, embedding_from_bytes, embedding_to_bytes, match_distances
from snapmatch.schema import PhotoStatus, SelfieStatus, events, faces, matches, photos, selfies


@dataclass(frozen=True)
class MatchResult:
    face_ids: list[int]
    matched_user_ids: list[int]


def _lock_event(conn: Connection, event_id: int) -> None:
    conn.execute(update(events).where(events.c.id == event_id).values(match_version=events.c.match_version + 1))


def write_photo_faces(
    *,
    photo_id: int,
    event_id: int,
    detected: list[DetectedFace],
    threshold: float,
    photo_values: dict[str, object],
) -> MatchResult:
    """Replace the photo's faces, match them against the event's ready selfies, mark the photo done."""
    with db.transaction() as conn:
        _lock_event(conn, event_id)
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
                    )
                ).inserted_primary_key[0]
            )
        matched_users: set[int] = set()
        if detected:
            ready = conn.execute(
                select(selfies.c.id, selfies.c.user_id, selfies.c.embedding).where(
                    selfies.c.event_id == event_id, selfies.c.status == SelfieStatus.READY.value
                )
            ).all()
            rows = []
            if ready:
                gallery = np.stack([f.embedding for f in detected]).astype(np.float32)
                for selfie in ready:
                    distances = match_distances(embedding_from_bytes(selfie.embedding), gallery)
                    for index in np.flatnonzero(distances <= threshold):
                        rows.append(
                            {
                                "selfie_id": selfie.id,
                                "face_id": face_ids[int(index)],
                                "photo_id": photo_id,
                                "event_id": event_id,
                                "distance": float(distances[index]),
                            }
                        )
                        matched_users.add(selfie.user_id)
            if rows:
                conn.execute(insert(matches), rows)
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


def write_selfie_embedding(*, selfie_id: int, event_id: int, embedding: np.ndarray, threshold: float) -> int:
    """Store the selfie's descriptor, match it against every face of the event; returns match count."""
    probe = np.asarray(embedding, dtype=np.float32)
    with db.transaction() as conn:
        _lock_event(conn, event_id)
        conn.execute(delete(matches).where(matches.c.selfie_id == selfie_id))
        gallery_rows = conn.execute(
            select(faces.c.id, faces.c.photo_id, faces.c.embedding).where(faces.c.event_id == event_id)
        ).all()
        rows = []
        if gallery_rows:
            gallery = np.frombuffer(b"".join(r.embedding for r in gallery_rows), dtype=np.float32).reshape(
                len(gallery_rows), -1
            )
            distances = match_distances(probe, gallery)
            for index in np.flatnonzero(distances <= threshold):
                face = gallery_rows[int(index)]
                rows.append(
                    {
                        "selfie_id": selfie_id,
                        "face_id": face.id,
                        "photo_id": face.photo_id,
                        "event_id": event_id,
                        "distance": float(distances[index]),
                    }
                )
        if rows:
            conn.execute(insert(matches), rows)
        conn.execute(
            update(selfies)
            .where(selfies.c.id == selfie_id)
            .values(
                status=SelfieStatus.READY.value,
                embedding=embedding_to_bytes(probe),
                error_code=None,
                error_message=None,
                updated_at=db.utcnow(),
            )
        )
    return len(rows)
