"""The per-photo and per-selfie work, independent of RQ: load the row, decode, find faces, write.

Job functions in ``jobs/`` call these; every step is idempotent so a re-run after a crash is safe.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import StrEnum

from redis import Redis
from sqlalchemy import func, select, update
from sqlalchemy.sql.functions import coalesce

from snapmatch import db, imaging, progress
from snapmatch.cache import invalidate_event_photos, invalidate_my_photos
from snapmatch.errors import PermanentImageError, ProviderRejected, QuotaExceeded, RetryLater, user_error, user_message
from snapmatch.faces import CollectionFaceEngine, DetectedFace, FaceEngine
from snapmatch.matching import PhotosInFlight, ProviderHit, write_photo_faces, write_selfie_matches
from snapmatch.progress import Stage
from snapmatch.schema import PhotoStatus, SelfieStatus, faces, photos, selfies
from snapmatch.selfie_check import SelfieRefusal, face_sharpness, selfie_refusal
from snapmatch.settings import Settings
from snapmatch.storage import Storage

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    DONE = "done"
    ALREADY_DONE = "already_done"
    FAILED = "failed"
    GONE = "gone"
    NO_FACE = "no_face"


def derived_key(original_key: str, kind: str) -> str:
    """events/1/originals/ab/<sha>.jpg -> events/1/<kind>/ab/<sha>.jpg"""
    head, _, rest = original_key.partition("/originals/")
    return f"{head}/{kind}/{rest.rsplit('.', 1)[0]}.jpg"


def claim_next_generation(table, row_id: int, generation: int, *, planned: bool = False, **values: object) -> bool:  # type: ignore[no-untyped-def]
    """Move a photo or selfie to its next job generation if it is still at ``generation``
    (compare-and-set, so two sweepers or a sweeper and a rescheduling job never both enqueue).

    ``planned``: the new generation is a provider wait, not a recovery from a crash, so it does not
    count against the sweeper's cap (``jobs.maintenance.MAX_GENERATIONS``)."""
    if planned:
        values["planned_generations"] = table.c.planned_generations + 1
    with db.transaction() as conn:
        return bool(
            conn.execute(
                update(table)
                .where(table.c.id == row_id, table.c.enqueue_count == generation)
                .values(enqueue_count=generation + 1, updated_at=db.utcnow(), **values)
            ).rowcount
        )


def mark_photo_failed(
    photo_id: int, code: str, redis: Redis | None = None, status: PhotoStatus = PhotoStatus.FAILED
) -> None:
    """Record the failure as a code and its sentence for people (``errors.user_message``); the
    details (exception text, paths, hosts) belong in the caller's log line, never on the row."""
    with db.transaction() as conn:
        row = conn.execute(select(photos.c.batch_id).where(photos.c.id == photo_id)).first()
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id, photos.c.status != PhotoStatus.DONE.value)
            .values(
                status=status.value,
                error_code=code,
                error_message=user_message(code),
                finished_at=db.utcnow(),
                updated_at=db.utcnow(),
            )
        )
    if redis is not None and row is not None:
        progress.publish(redis, row.batch_id, Stage.FAILED, photo_id, error=user_error(code))
        publish_batch_done_if_finished(redis, row.batch_id)


def publish_batch_done_if_finished(redis: Redis, batch_id: str | None) -> None:
    if not batch_id:
        return
    with db.connection() as conn:
        counts = dict(
            conn.execute(
                select(photos.c.status, func.count()).where(photos.c.batch_id == batch_id).group_by(photos.c.status)
            ).all()
        )
    if not counts.get(PhotoStatus.QUEUED.value) and not counts.get(PhotoStatus.PROCESSING.value):
        progress.publish(redis, batch_id, Stage.BATCH_DONE, None, counts=counts)


def _scale_boxes(detected: list[DetectedFace], scale: float) -> list[DetectedFace]:
    """Boxes found on a reduced decode, back in the original's pixels."""
    if scale == 1.0:
        return detected
    inverse = 1.0 / scale
    return [
        replace(
            f,
            left=round(f.left * inverse),
            top=round(f.top * inverse),
            width=round(f.width * inverse),
            height=round(f.height * inverse),
        )
        for f in detected
    ]


def _index_in_collection(engine: CollectionFaceEngine, row, prepared, settings: Settings, photo_values):  # type: ignore[no-untyped-def]
    """Collection engine: replace the photo's faces in the provider's collection, search each new face
    for selfies (only when the event has any), then write under the event lock like local faces."""
    deadline = engine.deadline_from(row.first_started_at or db.utcnow())
    with db.connection() as conn:
        stale = (
            conn.execute(
                select(faces.c.provider_face_id).where(
                    faces.c.photo_id == row.id, faces.c.provider_face_id.is_not(None)
                )
            )
            .scalars()
            .all()
        )
    if stale:  # a re-run: the provider must not keep two copies of this photo's faces
        engine.delete_faces(row.event_id, stale, deadline=deadline)
    indexed = engine.index_photo(row.event_id, row.id, prepared.working_jpeg, deadline=deadline)
    with db.connection() as conn:
        # Selfies with a provider face, ready or not yet: a selfie that indexed before this search is
        # found here; one that indexes later finds this photo itself (see write_selfie_matches).
        any_selfie = conn.execute(
            select(selfies.c.id)
            .where(selfies.c.event_id == row.event_id, selfies.c.provider_face_id.is_not(None))
            .limit(1)
        ).first()
    found = (
        engine.match_photo_faces(row.event_id, [f.face_id for f in indexed], deadline=deadline) if any_selfie else {}
    )
    hits = {
        index: [
            ProviderHit(
                selfie_id=h.selfie_id, photo_id=None, provider_face_id=h.face_id, distance=1 - h.similarity / 100
            )
            for h in found.get(face.face_id, [])
        ]
        for index, face in enumerate(indexed)
    }
    detected = [f.to_detected_face(prepared.width, prepared.height) for f in indexed]
    result = write_photo_faces(
        photo_id=row.id,
        event_id=row.event_id,
        detected=detected,
        threshold=settings.FACE_MATCH_THRESHOLD,
        photo_values=photo_values,
        provider_face_ids=[f.face_id for f in indexed],
        provider_hits=hits,
    )
    return result, detected


def process_photo(
    photo_id: int,
    *,
    engine: FaceEngine,
    storage: Storage,
    settings: Settings,
    redis: Redis,
    worker_name: str | None = None,
) -> Outcome:
    """Prepare the photo, find and describe its faces, match them against the event's selfies."""
    with db.transaction() as conn:
        row = conn.execute(select(photos).where(photos.c.id == photo_id)).first()
        if row is None:
            return Outcome.GONE
        if row.status in (PhotoStatus.DONE.value, PhotoStatus.FAILED.value, PhotoStatus.QUOTA_EXCEEDED.value):
            return Outcome.ALREADY_DONE
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id)
            .values(
                status=PhotoStatus.PROCESSING.value,
                attempts=photos.c.attempts + 1,
                worker_name=worker_name,
                started_at=db.utcnow(),
                first_started_at=coalesce(photos.c.first_started_at, db.utcnow()),
                updated_at=db.utcnow(),
            )
        )
    progress.publish(redis, row.batch_id, Stage.STARTED, photo_id)
    try:
        prepared = imaging.prepare(storage.get(row.original_key), max_pixels=settings.MAX_IMAGE_PIXELS)
    except PermanentImageError as exc:
        log.warning("photo %s cannot be decoded: %s", photo_id, exc.message)
        mark_photo_failed(photo_id, exc.code, redis)
        return Outcome.FAILED
    thumbnail_key = derived_key(row.original_key, "thumbs")
    working_key = derived_key(row.original_key, "work")
    storage.put(thumbnail_key, prepared.thumbnail_jpeg, "image/jpeg")
    storage.put(working_key, prepared.working_jpeg, "image/jpeg")
    photo_values = {
        "thumbnail_key": thumbnail_key,
        "working_key": working_key,
        "sharpness": prepared.sharpness,
        "exposure": prepared.exposure,
    }
    try:
        if isinstance(engine, CollectionFaceEngine):
            result, detected = _index_in_collection(engine, row, prepared, settings, photo_values)
        else:
            detected = _scale_boxes(engine.detect(prepared.bgr), prepared.scale)
            result = write_photo_faces(
                photo_id=photo_id,
                event_id=row.event_id,
                detected=detected,
                threshold=settings.FACE_MATCH_THRESHOLD,
                photo_values=photo_values,
            )
    except QuotaExceeded as exc:
        log.warning("photo %s waits: %s", photo_id, exc.message)
        mark_photo_failed(photo_id, exc.code, redis, status=PhotoStatus.QUOTA_EXCEEDED)
        return Outcome.FAILED
    except (PermanentImageError, ProviderRejected) as exc:  # the provider refused: retrying cannot help
        log.warning("photo %s failed for good: %s", photo_id, exc.message)
        mark_photo_failed(photo_id, exc.code, redis)
        return Outcome.FAILED
    invalidate_my_photos(redis, row.event_id, result.matched_user_ids)
    invalidate_event_photos(redis, row.event_id)
    progress.publish(redis, row.batch_id, Stage.FACES_INDEXED, photo_id, faces=len(detected))
    progress.publish(redis, row.batch_id, Stage.DONE, photo_id, faces=len(detected))
    publish_batch_done_if_finished(redis, row.batch_id)
    return Outcome.DONE


def describe_reference(
    engine: FaceEngine, prepared: imaging.PreparedImage
) -> tuple[DetectedFace | None, SelfieRefusal | None]:
    """A selfie's (or reference photo's) face, or why it cannot be matched on (``selfie_check``)."""
    if hasattr(engine, "detect_selfie_faces"):
        face, widths = engine.detect_selfie_faces(prepared.bgr)
    else:
        face = engine.detect_selfie(prepared.bgr)
        widths = [face.width] if face is not None else []
    sharpness = face_sharpness(prepared.bgr, face.left, face.top, face.width, face.height) if face is not None else None
    refusal = selfie_refusal([w / prepared.scale for w in widths], sharpness)
    return (None if refusal is not None else face), refusal


def mark_selfie_failed(selfie_id: int, image_key: str, code: str, message: str | None = None) -> None:
    """Fail the selfie upload ``image_key`` names (a replaced upload's job failing leaves the new one
    alone), with a sentence for people (the code's own unless the decision gave one, as a selfie
    refusal does); the caller logs the details."""
    with db.transaction() as conn:
        conn.execute(
            update(selfies)
            .where(
                selfies.c.id == selfie_id,
                selfies.c.image_key == image_key,
                selfies.c.status == SelfieStatus.PROCESSING.value,
            )
            .values(
                status=SelfieStatus.FAILED.value,
                error_code=code,
                error_message=message or user_message(code),
                updated_at=db.utcnow(),
            )
        )
        row = conn.execute(select(selfies.c.event_id, selfies.c.user_id).where(selfies.c.id == selfie_id)).first()
    if row is not None:
        # "my photos" shows the selfie's status: the next read must say it failed.
        from snapmatch.redis_client import get_redis

        invalidate_my_photos(get_redis(), row.event_id, [row.user_id])


def process_selfie(
    selfie_id: int,
    *,
    image_key: str,
    engine: FaceEngine,
    storage: Storage,
    settings: Settings,
    redis: Redis,
    worker_name: str | None = None,
) -> Outcome:
    """Describe the selfie's face and match it against every face already indexed in the event.

    ``image_key`` pins the upload this job was made for: a newer selfie replaces the row, and a
    stale job must not overwrite it.
    """
    with db.transaction() as conn:
        row = conn.execute(select(selfies).where(selfies.c.id == selfie_id)).first()
        if row is None or row.image_key != image_key:
            return Outcome.GONE
        if row.status != SelfieStatus.PROCESSING.value:
            return Outcome.ALREADY_DONE
        conn.execute(
            update(selfies).where(selfies.c.id == selfie_id).values(worker_name=worker_name, updated_at=db.utcnow())
        )
    try:
        prepared = imaging.prepare(storage.get(image_key), max_pixels=settings.MAX_IMAGE_PIXELS)
    except PermanentImageError as exc:
        log.warning("selfie %s cannot be decoded: %s", selfie_id, exc.message)
        mark_selfie_failed(selfie_id, image_key, exc.code)
        return Outcome.FAILED
    try:
        if isinstance(engine, CollectionFaceEngine):
            outcome = _match_selfie_in_collection(engine, row, prepared, settings, redis)
        else:
            face, refusal = describe_reference(engine, prepared)
            outcome = Outcome.NO_FACE
            if refusal is not None and refusal.code != "no_face":
                mark_selfie_failed(selfie_id, image_key, refusal.code, refusal.message)
                outcome = Outcome.FAILED
            elif face is not None:
                changed = write_selfie_matches(
                    selfie_id=selfie_id,
                    event_id=row.event_id,
                    image_key=image_key,
                    threshold=settings.FACE_MATCH_THRESHOLD,
                    embedding=face.embedding,
                )
                # Faces can move between attendees (one attendee per face): every changed list goes.
                invalidate_my_photos(redis, row.event_id, sorted(changed or ()))
                outcome = Outcome.DONE
    except QuotaExceeded as exc:
        log.warning("selfie %s waits: %s", selfie_id, exc.message)
        mark_selfie_failed(selfie_id, image_key, exc.code)
        outcome = Outcome.FAILED
    except (PermanentImageError, ProviderRejected) as exc:  # the provider refused: retrying cannot help
        log.warning("selfie %s failed for good: %s", selfie_id, exc.message)
        mark_selfie_failed(selfie_id, image_key, exc.code)
        outcome = Outcome.FAILED
    except PhotosInFlight as exc:
        raise RetryLater(2.0, "photos in flight") from exc
    if outcome is Outcome.NO_FACE:
        with db.transaction() as conn:
            conn.execute(
                update(selfies)
                .where(selfies.c.id == selfie_id, selfies.c.image_key == image_key)
                .values(
                    status=SelfieStatus.NO_FACE.value,
                    error_code="no_face",
                    error_message=user_message("no_face"),
                    updated_at=db.utcnow(),
                )
            )
    invalidate_my_photos(redis, row.event_id, [row.user_id])
    return outcome


def _match_selfie_in_collection(  # type: ignore[no-untyped-def]
    engine: CollectionFaceEngine, row, prepared, settings: Settings, redis: Redis | None = None
) -> Outcome:
    """Collection engine: index the selfie (once per upload), record its provider face id at once so
    photos indexed from now on search for it, then search the collection for its photos."""
    deadline = engine.deadline_from(None)
    face_id = row.provider_face_id
    if face_id is None:
        face = engine.index_selfie(row.event_id, row.id, prepared.working_jpeg, deadline=deadline)
        if face is None:
            return Outcome.NO_FACE
        face_id = face.face_id
        with db.transaction() as conn:
            conn.execute(
                update(selfies)
                .where(selfies.c.id == row.id, selfies.c.image_key == row.image_key)
                .values(provider_face_id=face_id, updated_at=db.utcnow())
            )
    hits = [
        ProviderHit(selfie_id=None, photo_id=h.photo_id, provider_face_id=h.face_id, distance=1 - h.similarity / 100)
        for h in engine.match_selfie(row.event_id, face_id, deadline=deadline)
    ]
    written = write_selfie_matches(
        selfie_id=row.id,
        event_id=row.event_id,
        image_key=row.image_key,
        threshold=settings.FACE_MATCH_THRESHOLD,
        provider_face_id=face_id,
        provider_hits=hits,
    )
    if written is None:
        return Outcome.GONE
    if redis is not None:
        invalidate_my_photos(redis, row.event_id, sorted(written))
    return Outcome.DONE
