"""Deletions owed to the storage and to a provider's face collection, kept in the database.

"Delete my face data" and a replaced selfie record the selfie's image key and provider face here in
the same transaction that forgets the selfie, so neither a Redis outage nor a storage error can lose
them: the request deletes what it can after the commit, and the sweeper (``jobs.maintenance``)
retries the rest: stored images itself, provider faces through a job per event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Connection, delete, insert, select

from snapmatch import db
from snapmatch.schema import pending_deletions
from snapmatch.storage import Storage

log = logging.getLogger(__name__)


def record(
    conn: Connection, event_id: int, *, provider_face_ids: Iterable[str] = (), storage_keys: Iterable[str] = ()
) -> None:
    """Owe these deletions, inside the caller's transaction."""
    now = db.utcnow()
    rows = [
        {"event_id": event_id, "provider_face_id": f, "storage_key": None, "created_at": now} for f in provider_face_ids
    ]
    rows += [
        {"event_id": event_id, "provider_face_id": None, "storage_key": k, "created_at": now} for k in storage_keys
    ]
    if rows:
        conn.execute(insert(pending_deletions), rows)


def events_with_provider_faces(limit: int = 500) -> list[int]:
    with db.connection() as conn:
        return list(
            conn.execute(
                select(pending_deletions.c.event_id)
                .where(pending_deletions.c.provider_face_id.is_not(None))
                .distinct()
                .order_by(pending_deletions.c.event_id)
                .limit(limit)
            ).scalars()
        )


def provider_faces(event_id: int, limit: int = 4096) -> list[tuple[int, str]]:
    """(record id, provider face id) still to delete in the event's collection, oldest first."""
    with db.connection() as conn:
        return [
            (r.id, r.provider_face_id)
            for r in conn.execute(
                select(pending_deletions.c.id, pending_deletions.c.provider_face_id)
                .where(pending_deletions.c.event_id == event_id, pending_deletions.c.provider_face_id.is_not(None))
                .order_by(pending_deletions.c.id)
                .limit(limit)
            )
        ]


def done(record_ids: list[int]) -> None:
    """These deletions happened (or were found done already)."""
    with db.transaction() as conn:
        for start in range(0, len(record_ids), 500):
            conn.execute(delete(pending_deletions).where(pending_deletions.c.id.in_(record_ids[start : start + 500])))


def delete_stored(storage: Storage, keys: Iterable[str]) -> int:
    """Delete stored objects now and their records; a failure is logged and left for the sweeper."""
    deleted = 0
    for key in keys:
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - any storage failure: the record stays, the sweeper retries
            log.warning("could not delete %s now; the sweeper will retry", key, exc_info=True)
            continue
        with db.transaction() as conn:
            conn.execute(delete(pending_deletions).where(pending_deletions.c.storage_key == key))
        deleted += 1
    return deleted


def retry_stored(storage: Storage, older_than_seconds: float = 60, limit: int = 500) -> int:
    """Stored objects whose deletion is owed for a while (the request's own attempt failed)."""
    cutoff = db.utcnow() - timedelta(seconds=older_than_seconds)
    with db.connection() as conn:
        keys = (
            conn.execute(
                select(pending_deletions.c.storage_key)
                .where(pending_deletions.c.storage_key.is_not(None), pending_deletions.c.created_at < cutoff)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    return delete_stored(storage, keys)
