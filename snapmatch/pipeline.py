"""The per-photo and per-selfie work, independent of RQ: load the row, decode, find faces, write.

Job functions in ``jobs/`` call these; every step is idempotent so a re-run after a crash is safe.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import StrEnum

from redis import Redis
from sqlalchemy import func, select, update

from snapmatch import db, imaging, progress
from snapmatch.cache import invalidate_my_photos
from snapmatch.errors import PermanentImageError
from snapmatch.faces import FaceEngine
from snapmatch.matching import write_photo_faces, write_selfie_embedding
from snapmatch.progress import Stage
from snapmatch.schema import PhotoStatus, SelfieStatus, photos, selfies
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


def mark_photo_failed(photo_id: int, code: str, message: str, redis: Redis | None = None) -> None:
    with db.transaction() as conn:
        row = conn.execute(select(photos.c.batch_id).where(photos.c.id == photo_id)).first()
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id, photos.c.status != PhotoStatus.DONE.value)
            .values(
                status=PhotoStatus.FAILED.value,
                error_code=code,
                error_message=message,
                finished_at=db.utcnow(),
                updated_at=db.utcnow(),
            )
        )
    if redis is not None and row is not None:
        progress.publish(redis, row.batch_id, Stage.FAILED, photo_id, error={"code": code, "message": message})
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
        if row.status in (PhotoStatus.DONE.value, PhotoStatus.FAILED.value):
            return Outcome.ALREADY_DONE
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id)
            .values(
                status=PhotoStatus.PROCESSING.value,
                attempts=photos.c.attempts + 1,
                worker_name=worker_name,
                started_at=db.utcnow(),
                updated_at=db.utcnow(),
            )
        )
    progress.publish(redis, row.batch_id, Stage.STARTED, photo_id)
    try:
        prepared = imaging.prepare(storage.get(row.original_key), max_pixels=settings.MAX_IMAGE_PIXELS)
    except PermanentImageError as exc:
        mark_photo_failed(photo_id, exc.code, exc.message, redis)
        return Outcome.FAILED
    thumbnail_key = derived_key(row.original_key, "thumbs")
    working_key = derived_key(row.original_key, "work")
    storage.put(thumbnail_key, prepared.thumbnail_jpeg, "image/jpeg")
    storage.put(working_key, prepared.working_jpeg, "image/jpeg")
    detected = engine.detect(prepared.rgb)
    if prepared.scale != 1.0:
        inverse = 1.0 / prepared.scale
        detected = [
            replace(
                f,
                left=round(f.left * inverse),
                top=round(f.top * inverse),
                width=round(f.width * inverse),
                height=round(f.height * inverse),
            )
            for f in detected
        ]
    result = write_photo_faces(
        photo_id=photo_id,
        event_id=row.event_id,
        detected=detected,
        threshold=settings.FACE_MATCH_THRESHOLD,
        photo_values={
            "thumbnail_key": thumbnail_key,
            "working_key": working_key,
            "sharpness": prepared.sharpness,
            "exposure": prepared.exposure,
        },
    )
    invalidate_my_photos(redis, row.event_id, result.matched_user_ids)
    progress.publish(redis, row.batch_id, Stage.FACES_INDEXED, photo_id, faces=len(detected))
    progress.publish(redis, row.batch_id, Stage.DONE, photo_id, faces=len(detected))
    publish_batch_done_if_finished(redis, row.batch_id)
    return Outcome.DONE


def mark_selfie_failed(selfie_id: int, code: str, message: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            update(selfies)
            .where(selfies.c.id == selfie_id, selfies.c.status == SelfieStatus.PROCESSING.value)
            .values(status=SelfieStatus.FAILED.value, error_code=code, error_message=message, updated_at=db.utcnow())
        )


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
        mark_selfie_failed(selfie_id, exc.code, exc.message)
        return Outcome.FAILED
    face = engine.detect_selfie(prepared.rgb)
    if face is None:
        with db.transaction() as conn:
            conn.execute(
                update(selfies)
                .where(selfies.c.id == selfie_id, selfies.c.image_key == image_key)
                .values(
                    status=SelfieStatus.NO_FACE.value,
                    error_code="no_face",
                    error_message="No face was found in the selfie: take one facing the camera, in good light.",
                    updated_at=db.utcnow(),
                )
            )
        invalidate_my_photos(redis, row.event_id, [row.user_id])
        return Outcome.NO_FACE
    write_selfie_embedding(
        selfie_id=selfie_id,
        event_id=row.event_id,
        embedding=face.embedding,
        threshold=settings.FACE_MATCH_THRESHOLD,
    )
    invalidate_my_photos(redis, row.event_id, [row.user_id])
    return Outcome.DONE
