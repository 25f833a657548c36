"""Faces waiting to be deleted from a provider's collection, kept in the database.

"Delete my face data" and a replaced selfie record the provider face here in the same transaction
that forgets the selfie, so the deletion cannot be lost to a Redis outage; the sweeper enqueues the
job that deletes them at the provider and then removes these rows (``jobs.maintenance``).
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select

from snapmatch import db
from snapmatch.schema import provider_face_deletions


def record(conn: Connection, event_id: int, face_ids: list[str]) -> None:
    """Queue provider faces for deletion, inside the caller's transaction."""
    if face_ids:
        now = db.utcnow()
        conn.execute(
            insert(provider_face_deletions),
            [{"event_id": event_id, "provider_face_id": f, "created_at": now} for f in face_ids],
        )


def events_with_pending(limit: int = 500) -> list[int]:
    with db.connection() as conn:
        return list(
            conn.execute(
                select(provider_face_deletions.c.event_id)
                .distinct()
                .order_by(provider_face_deletions.c.event_id)
                .limit(limit)
            ).scalars()
        )


def pending(event_id: int, limit: int = 4096) -> list[tuple[int, str]]:
    """(row id, provider face id) still to delete for the event, oldest first."""
    with db.connection() as conn:
        return [
            (r.id, r.provider_face_id)
            for r in conn.execute(
                select(provider_face_deletions.c.id, provider_face_deletions.c.provider_face_id)
                .where(provider_face_deletions.c.event_id == event_id)
                .order_by(provider_face_deletions.c.id)
                .limit(limit)
            )
        ]


def done(row_ids: list[int]) -> None:
    """The provider no longer holds these faces (deleted now, or already gone)."""
    with db.transaction() as conn:
        for start in range(0, len(row_ids), 500):
            conn.execute(
                delete(provider_face_deletions).where(provider_face_deletions.c.id.in_(row_ids[start : start + 500]))
            )
