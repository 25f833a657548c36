"""What attendees tell us about their matches: "not me", "is me", more reference photos; and the
"my photos" read that honours it (photos shown as theirs, borderline ones apart under "maybe").

A correction is kept by photo, so it outlives any re-run of the photo; the face it was about is kept
as evidence for the event-wide rule (``snapmatch.matching_rule``), which re-decides at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select

from snapmatch import db
from snapmatch.accounts import User
from snapmatch.errors import Conflict, NotFound
from snapmatch.ingest import check_spooled, spool
from snapmatch.matching import lock_event, rematch_attendee
from snapmatch.matching_rule import MatchRule, pairwise
from snapmatch.schema import (
    CorrectionVerdict,
    SelfieStatus,
    faces,
    match_corrections,
    matches,
    maybe_matches,
    photos,
    selfie_references,
    selfies,
)
from snapmatch.settings import Settings
from snapmatch.storage import Storage


@dataclass(frozen=True)
class ReferenceUpload:
    reference_id: int
    image_key: str


def _selfie_row(conn: Connection, user: User, event_id: int):  # type: ignore[no-untyped-def]
    return conn.execute(select(selfies).where(selfies.c.event_id == event_id, selfies.c.user_id == user.id)).first()


def _their_face(conn: Connection, selfie_id: int, photo_id: int, references: np.ndarray | None) -> bytes | None:
    """The face of the photo the attendee meant: the one matched (or offered) to them, else the
    face closest to their references; None when the photo has no local face."""
    for table in (matches, maybe_matches):
        row = conn.execute(
            select(faces.c.embedding)
            .join(table, table.c.face_id == faces.c.id)
            .where(table.c.selfie_id == selfie_id, table.c.photo_id == photo_id)
            .order_by(table.c.distance)
            .limit(1)
        ).first()
        if row is not None and row.embedding:
            return bytes(row.embedding)
    rows = [
        r.embedding
        for r in conn.execute(
            select(faces.c.embedding).where(faces.c.photo_id == photo_id, faces.c.provider_face_id.is_(None))
        )
        if r.embedding
    ]
    if not rows or references is None:
        return None
    vectors = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), -1)
    return bytes(rows[int(np.argmin(pairwise(references, vectors).min(axis=0)))])


def correct(user: User, photo_id: int, verdict: CorrectionVerdict, *, threshold: float) -> tuple[int, set[int]]:
    """Record the attendee's word on a photo they were shown or offered, then re-decide their
    matches at once. Returns (event id, users whose photos changed)."""
    with db.transaction() as conn:
        photo = conn.execute(select(photos.c.id, photos.c.event_id).where(photos.c.id == photo_id)).first()
        selfie = _selfie_row(conn, user, photo.event_id) if photo is not None else None
        offered = selfie is not None and any(
            conn.execute(
                select(table.c.id).where(table.c.selfie_id == selfie.id, table.c.photo_id == photo_id).limit(1)
            ).first()
            for table in (matches, maybe_matches)
        )
        corrected = (
            selfie is not None
            and conn.execute(
                select(match_corrections.c.photo_id).where(
                    match_corrections.c.user_id == user.id, match_corrections.c.photo_id == photo_id
                )
            ).first()
        )
        if photo is None or selfie is None or not (offered or corrected):
            # Only photos shown or offered to this attendee can be corrected: ids are not probed.
            raise NotFound(f"No photo {photo_id}.", code="photo_not_found")
        lock_event(conn, photo.event_id)
        references = np.frombuffer(selfie.embedding, np.float32)[None, :] if selfie.embedding else None
        embedding = _their_face(conn, selfie.id, photo_id, references)
        conn.execute(
            delete(match_corrections).where(
                match_corrections.c.user_id == user.id, match_corrections.c.photo_id == photo_id
            )
        )
        conn.execute(
            insert(match_corrections).values(
                event_id=photo.event_id,
                user_id=user.id,
                photo_id=photo_id,
                verdict=verdict.value,
                embedding=embedding,
                created_at=db.utcnow(),
            )
        )
        if verdict is CorrectionVerdict.NOT_ME:
            # Hidden at once, whatever the rule decides next.
            for table in (matches, maybe_matches):
                conn.execute(delete(table).where(table.c.selfie_id == selfie.id, table.c.photo_id == photo_id))
        changed = rematch_attendee(conn, photo.event_id, user.id, MatchRule.from_threshold(threshold))
    return photo.event_id, changed | {user.id}


def my_photos(user: User, event_id: int) -> dict[str, list[dict[str, object]]]:
    """``{"photos": [...], "maybe": [...]}``: photos the rule gave the attendee or they confirmed,
    and borderline ones offered apart; never a photo they said was not them. Newest first."""
    with db.connection() as conn:
        selfie = _selfie_row(conn, user, event_id)
        if selfie is None or selfie.status != SelfieStatus.READY.value:
            return {"photos": [], "maybe": []}
        words = dict(
            conn.execute(
                select(match_corrections.c.photo_id, match_corrections.c.verdict).where(
                    match_corrections.c.event_id == event_id, match_corrections.c.user_id == user.id
                )
            ).all()
        )
        found: dict[str, dict[int, float]] = {}
        for name, table in (("photos", matches), ("maybe", maybe_matches)):
            found[name] = {
                int(r.photo_id): float(r.distance)
                for r in conn.execute(
                    select(table.c.photo_id, func.min(table.c.distance).label("distance"))
                    .where(table.c.selfie_id == selfie.id)
                    .group_by(table.c.photo_id)
                )
            }
        for photo_id, verdict in words.items():
            if verdict == CorrectionVerdict.IS_ME.value and photo_id not in found["photos"]:
                found["photos"][photo_id] = found["maybe"].get(photo_id, 0.0)
    not_me = {p for p, v in words.items() if v == CorrectionVerdict.NOT_ME.value}
    shown = {p: d for p, d in found["photos"].items() if p not in not_me}
    maybe = {p: d for p, d in found["maybe"].items() if p not in not_me and p not in shown}
    return {"photos": _items(shown), "maybe": _items(maybe)}


def _items(found: dict[int, float]) -> list[dict[str, object]]:
    return [
        {
            "photo_id": photo_id,
            "thumbnail_url": f"/api/photos/{photo_id}/thumbnail",
            "similarity": round(max(0.0, 1.0 - distance), 4),
        }
        for photo_id, distance in sorted(found.items(), reverse=True)
    ]


def forget_references(conn: Connection, selfie_id: int, user_id: int, event_id: int) -> list[str]:
    """Delete the attendee's face data beyond the selfie (reference photos, faces they confirmed as
    theirs, maybe offers); returns the reference images' keys to delete from storage. "Not me" words
    stay: they hold no face of the attendee and keep hiding those photos if they come back."""
    keys = list(
        conn.execute(select(selfie_references.c.image_key).where(selfie_references.c.selfie_id == selfie_id)).scalars()
    )
    conn.execute(delete(selfie_references).where(selfie_references.c.selfie_id == selfie_id))
    conn.execute(delete(maybe_matches).where(maybe_matches.c.selfie_id == selfie_id))
    conn.execute(
        delete(match_corrections).where(
            match_corrections.c.event_id == event_id,
            match_corrections.c.user_id == user_id,
            match_corrections.c.verdict == CorrectionVerdict.IS_ME.value,
        )
    )
    return keys


def add_reference(
    user: User, event_id: int, stream: BinaryIO, *, storage: Storage, settings: Settings, tmp_dir: str
) -> ReferenceUpload:
    """Store another reference photo of the attendee (the selfie counts as the first)."""
    with db.connection() as conn:
        selfie = _selfie_row(conn, user, event_id)
        if selfie is None:
            raise Conflict(
                "Upload your selfie first (PUT /api/events/<id>/selfie); more reference photos come after it.",
                code="selfie_required",
            )
        if _reference_photos(conn, selfie.id) >= settings.MAX_REFERENCE_PHOTOS:
            raise _too_many_references(settings)
    spooled = spool(stream, tmp_dir, settings.max_upload_bytes)
    try:
        header = check_spooled(spooled, settings)
        # A key of its own (not only the content hash): a refused upload deletes its image, never
        # the same photo uploaded at the same moment.
        suffix = f"{spooled.sha256[:32]}-{secrets.token_hex(8)}.{header.type.name.lower()}"
        image_key = f"selfies/{event_id}/{user.id}/ref-{suffix}"
        storage.put_file(image_key, spooled.path, header.type.value)
    finally:
        spooled.discard()
    now = db.utcnow()
    try:
        with db.transaction() as conn:
            # Counted again under the event lock: simultaneous uploads cannot pass the limit together.
            lock_event(conn, event_id)
            if _reference_photos(conn, selfie.id) >= settings.MAX_REFERENCE_PHOTOS:
                raise _too_many_references(settings)
            reference_id = conn.execute(
                insert(selfie_references).values(
                    selfie_id=selfie.id,
                    image_key=image_key,
                    status=SelfieStatus.PROCESSING.value,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
    except BaseException:
        storage.delete(image_key)  # not recorded: nothing else will ever delete it
        raise
    return ReferenceUpload(int(reference_id), image_key)


def _reference_photos(conn: Connection, selfie_id: int) -> int:
    """The attendee's reference photos, the selfie included."""
    count = conn.execute(
        select(func.count()).select_from(selfie_references).where(selfie_references.c.selfie_id == selfie_id)
    ).scalar()
    return 1 + int(count or 0)


def _too_many_references(settings: Settings) -> Conflict:
    return Conflict(
        f"You already have {settings.MAX_REFERENCE_PHOTOS} reference photos (the selfie included).",
        code="too_many_reference_photos",
    )


def process_reference(reference_id: int, *, engine, storage: Storage, settings: Settings, redis) -> str:  # type: ignore[no-untyped-def]
    """Describe a reference photo's face and re-decide the attendee's matches with it (the worker's
    side of ``add_reference``). Returns the outcome: ready, no_face, failed or gone."""
    from snapmatch import imaging
    from snapmatch.cache import invalidate_my_photos
    from snapmatch.errors import PermanentImageError
    from snapmatch.faces import CollectionFaceEngine, embedding_to_bytes
    from snapmatch.pipeline import describe_reference

    with db.connection() as conn:
        row = conn.execute(
            select(selfie_references, selfies.c.event_id, selfies.c.user_id)
            .join(selfies, selfies.c.id == selfie_references.c.selfie_id)
            .where(selfie_references.c.id == reference_id)
        ).first()
    if row is None:
        return "gone"
    if row.status != SelfieStatus.PROCESSING.value:
        return row.status

    def finish(status: SelfieStatus, code: str | None = None, message: str | None = None) -> str:
        with db.transaction() as conn:
            conn.execute(
                selfie_references.update()
                .where(selfie_references.c.id == reference_id)
                .values(status=status.value, error_code=code, error_message=message, updated_at=db.utcnow())
            )
        return status.value

    if isinstance(engine, CollectionFaceEngine):
        return finish(
            SelfieStatus.FAILED,
            "not_supported",
            "Extra reference photos work with the local face engine only; your selfie is used.",
        )
    try:
        prepared = imaging.prepare(storage.get(row.image_key), max_pixels=settings.MAX_IMAGE_PIXELS)
    except PermanentImageError as exc:
        return finish(SelfieStatus.FAILED, exc.code, exc.message)
    face, refusal = describe_reference(engine, prepared)
    if refusal is not None or face is None:
        status = SelfieStatus.NO_FACE if refusal is None or refusal.code == "no_face" else SelfieStatus.FAILED
        return finish(status, refusal.code if refusal else "no_face", refusal.message if refusal else None)
    with db.transaction() as conn:
        lock_event(conn, row.event_id)
        conn.execute(
            selfie_references.update()
            .where(selfie_references.c.id == reference_id)
            .values(
                status=SelfieStatus.READY.value,
                embedding=embedding_to_bytes(face.embedding),
                error_code=None,
                error_message=None,
                updated_at=db.utcnow(),
            )
        )
        changed = rematch_attendee(
            conn, row.event_id, row.user_id, MatchRule.from_threshold(settings.FACE_MATCH_THRESHOLD)
        )
    invalidate_my_photos(redis, row.event_id, sorted(changed))
    return SelfieStatus.READY.value
