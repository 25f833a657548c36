"""Attendee selfies: one per attendee per event, replaced on re-upload, deleted with its matches."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, insert, select, update

from snapmatch import db, deletions
from snapmatch.accounts import User
from snapmatch.corrections import forget_references
from snapmatch.errors import InvalidUpload, NotFound, SnapmatchError, user_message
from snapmatch.ingest import check_spooled, spool
from snapmatch.matching import held_groups, lock_event, release_groups
from snapmatch.schema import SelfieStatus, matches, maybe_matches, selfies
from snapmatch.settings import Settings, get_settings
from snapmatch.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfieUpload:
    selfie_id: int
    image_key: str
    generation: int
    # The replaced selfie's face in a provider collection, recorded for deletion (None with the local engine).
    stale_provider_face_id: str | None = None
    # Other attendees whose photos changed: faces the replaced selfie held went to them.
    changed_users: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SelfieDeleted:
    provider_face_id: str | None  # the face the provider still holds, owed for deletion
    changed_users: frozenset[int]  # other attendees who now have faces the selfie held


def put_selfie(
    user: User, event_id: int, stream: BinaryIO, *, storage: Storage, settings: Settings, tmp_dir: str
) -> SelfieUpload:
    """Store the selfie and (re)set its row to processing; raises ``InvalidUpload`` for bad files.

    Each upload gets a key of its own (not only its content hash): two simultaneous uploads of one
    file must not share a key that the later one deletes as "the replaced selfie". The row is
    written under the event's matching lock, which also serialises simultaneous first selfies of
    one attendee (no unique violation). The image a commit replaced is owed for deletion in the
    same transaction (``deletions``) and deleted after it; the new image is deleted if the commit
    failed. Raises ``SnapmatchError`` ``storage_error`` (503) when the image cannot be stored.
    """
    spooled = spool(stream, tmp_dir, settings.max_upload_bytes)
    try:
        header = check_spooled(spooled, settings)
        image_key = (
            f"selfies/{event_id}/{user.id}/{spooled.sha256[:32]}-{secrets.token_hex(8)}.{header.type.name.lower()}"
        )
        try:
            storage.put_file(image_key, spooled.path, header.type.value)
        except Exception as exc:  # noqa: BLE001 - OSError, botocore's errors...: the details go to the log
            log.exception("storing selfie %s failed", image_key)
            raise SnapmatchError(user_message("storage_error"), code="storage_error", status=503) from exc
    finally:
        spooled.discard()
    try:
        upload, replaced_key = _record_selfie(user, event_id, image_key)
    except BaseException:
        storage.delete(image_key)
        raise
    if replaced_key is not None:
        deletions.delete_stored(storage, [replaced_key])
    return upload


def _record_selfie(user: User, event_id: int, image_key: str) -> tuple[SelfieUpload, str | None]:
    """Insert or replace the attendee's selfie row; returns the upload and the image key it replaced."""
    now = db.utcnow()
    with db.transaction() as conn:
        # First statement: a photo committing now either finished before (its matches on the old
        # selfie are deleted below) or starts after and sees this selfie as processing.
        lock_event(conn, event_id)
        row = conn.execute(
            select(selfies.c.id, selfies.c.image_key, selfies.c.enqueue_count, selfies.c.provider_face_id).where(
                selfies.c.event_id == event_id, selfies.c.user_id == user.id
            )
        ).first()
        if row is None:
            selfie_id = conn.execute(
                insert(selfies).values(
                    event_id=event_id,
                    user_id=user.id,
                    image_key=image_key,
                    status=SelfieStatus.PROCESSING.value,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            return SelfieUpload(selfie_id, image_key, 0), None
        released = held_groups(conn, row.id)
        conn.execute(delete(matches).where(matches.c.selfie_id == row.id))
        # The old image and face leave the storage and the provider's collection even if Redis or the
        # storage is down right now.
        deletions.record(
            conn,
            event_id,
            provider_face_ids=[row.provider_face_id] if row.provider_face_id else [],
            storage_keys=[row.image_key],
        )
        conn.execute(delete(maybe_matches).where(maybe_matches.c.selfie_id == row.id))
        generation = row.enqueue_count + 1
        conn.execute(
            update(selfies)
            .where(selfies.c.id == row.id)
            .values(
                image_key=image_key,
                status=SelfieStatus.PROCESSING.value,
                embedding=None,
                provider_face_id=None,
                error_code=None,
                error_message=None,
                enqueue_count=generation,
                planned_generations=generation,  # a new upload starts with no crashes against it
                updated_at=now,
            )
        )
        # Until the new selfie is described, the attendee holds nothing: others may have those faces.
        changed = release_groups(conn, event_id, released, get_settings().FACE_MATCH_THRESHOLD) - {user.id}
    return SelfieUpload(row.id, image_key, generation, row.provider_face_id, frozenset(changed)), row.image_key


def get_selfie(user: User, event_id: int):  # type: ignore[no-untyped-def]
    with db.connection() as conn:
        return conn.execute(select(selfies).where(selfies.c.event_id == event_id, selfies.c.user_id == user.id)).first()


def delete_selfie(user: User, event_id: int, *, storage: Storage) -> SelfieDeleted:
    """Forget the attendee's face: the selfie image, its descriptor and every match.

    The image and the provider's face are owed for deletion in the same transaction (``deletions``),
    so a storage error or a Redis outage cannot keep them. The faces it held are re-decided without
    it (another attendee may be in those photos). Returns the face id the provider still holds, if
    the engine keeps one, and the other attendees whose photos changed."""
    with db.transaction() as conn:
        lock_event(conn, event_id)  # a photo committing now must not add matches to a selfie being deleted
        row = conn.execute(
            select(selfies.c.id, selfies.c.image_key, selfies.c.provider_face_id).where(
                selfies.c.event_id == event_id, selfies.c.user_id == user.id
            )
        ).first()
        if row is None:
            raise NotFound("You have no selfie in this event.", code="selfie_not_found")
        released = held_groups(conn, row.id)
        reference_keys = forget_references(conn, row.id, user.id, event_id)
        conn.execute(delete(matches).where(matches.c.selfie_id == row.id))
        conn.execute(delete(selfies).where(selfies.c.id == row.id))
        changed = release_groups(conn, event_id, released, get_settings().FACE_MATCH_THRESHOLD) - {user.id}
        deletions.record(
            conn,
            event_id,
            provider_face_ids=[row.provider_face_id] if row.provider_face_id else [],
            storage_keys=[row.image_key, *reference_keys],
        )
    deletions.delete_stored(storage, [row.image_key, *reference_keys])
    return SelfieDeleted(row.provider_face_id, frozenset(changed))


__all__ = ["InvalidUpload", "SelfieDeleted", "SelfieUpload", "delete_selfie", "get_selfie", "put_selfie"]
