"""Photographer API: events, uploads (202 per file), duplicate checks, batches and photos."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, current_app, jsonify, request
from redis import RedisError
from sqlalchemy import func, select

from jobs.queues import enqueue_photos, photo_job_id, photo_queue_length
from snapmatch import db, events, progress
from snapmatch.errors import NotFound, QueueFull, SnapmatchError
from snapmatch.ingest import BATCH_ID, ensure_batch, ingest_file
from snapmatch.progress import Stage
from snapmatch.schema import PhotoStatus, Role, batches, photos
from webapp.auth import current_user, require_user
from webapp.bodylimits import FORM_PARTS, body_limit, upload_limit
from webapp.errors import json_body
from webapp.metrics import count_uploads
from webapp.request_limits import upload_rate_limit
from webapp.services import redis, settings, storage, upload_tmp_dir

bp = Blueprint("photographer", __name__)
log = logging.getLogger(__name__)
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# One duplicate check asks about at most this many digests; its body may be that long (JSON's
# quotes, comma and a space around each one), beyond the 64 KiB of other JSON routes.
MAX_CHECK_DIGESTS = 10000
CHECK_BYTES_PER_DIGEST = 72
# One upload request carries at most 20 × MAX_UPLOAD_MB, in at most this many parts (files + fields).
MAX_FILES_PER_UPLOAD_BYTES = 20
MAX_UPLOAD_PARTS = 500


@bp.post("/api/events")
@require_user(Role.PHOTOGRAPHER)
def create_event():  # type: ignore[no-untyped-def]
    name = json_body().get("name", "")
    if not isinstance(name, str):
        raise SnapmatchError("Give the event a name of 1 to 200 characters.", code="invalid_name")
    event = events.create_event(current_user(), name)
    return jsonify({"id": event.id, "name": event.name, "access_code": event.access_code}), 201


@bp.get("/api/events/<id:event_id>")
@require_user()
def get_event(event_id: int):  # type: ignore[no-untyped-def]
    event = events.owned_event(current_user(), event_id)
    counts = events.photo_counts(event_id)
    return jsonify(
        {
            "id": event.id,
            "name": event.name,
            "access_code": event.access_code,
            "photo_counts": counts,
            "photos_total": sum(counts.values()),
        }
    )


def _check_queue_capacity() -> None:
    limit = settings().PHOTO_QUEUE_MAX_SIZE
    try:
        depth = photo_queue_length(redis())
    except RedisError:
        return  # accept anyway: the row is the truth and the sweeper enqueues once Redis is back
    if depth >= limit:
        raise QueueFull(
            f"The photo queue holds {depth} photos (limit {limit}); nothing was stored. Retry later.",
            retry_after=30,
        )


@bp.post("/api/events/<id:event_id>/photos")
@upload_rate_limit
@upload_limit(files=MAX_FILES_PER_UPLOAD_BYTES, max_parts=MAX_UPLOAD_PARTS)
@require_user(Role.PHOTOGRAPHER)
def upload_photos(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    events.owned_event(user, event_id)
    _check_queue_capacity()
    files = request.files.getlist("files") + request.files.getlist("file")
    if not files:
        raise SnapmatchError("Send one or more files in the multipart field `files`.", code="no_files")
    batch_id = ensure_batch(event_id, user.id, request.form.get("batch_id") or None)
    cfg = settings()
    results = [
        ingest_file(
            event_id=event_id,
            batch_id=batch_id,
            stream=f.stream,
            filename=f.filename,
            storage=storage(),
            settings=cfg,
            tmp_dir=upload_tmp_dir(),
        )
        for f in files
    ]
    queued = [r for r in results if r.status == PhotoStatus.QUEUED.value]
    count_uploads(r.status for r in results)
    progress.publish_many(
        redis(),
        batch_id,
        [(Stage.RECEIVED, r.photo_id, {"filename": r.filename, "status": r.status}) for r in results],
    )
    for r in queued:
        r.job_id = photo_job_id(r.photo_id, 0)
    try:
        enqueue_photos(redis(), [(r.photo_id, 0) for r in queued])
        progress.publish_many(redis(), batch_id, [(Stage.QUEUED, r.photo_id, {"filename": r.filename}) for r in queued])
    except RedisError as exc:
        # Stored and recorded: the sweeper enqueues these once Redis answers again.
        log.warning("enqueue failed for %d photos, the sweeper will retry: %s", len(queued), exc)
    return jsonify({"batch_id": batch_id, "photos": [r.as_dict() for r in results]}), 202


@bp.post("/api/events/<id:event_id>/photos/check")
@body_limit(lambda s: max(s.JSON_MAX_BYTES, MAX_CHECK_DIGESTS * CHECK_BYTES_PER_DIGEST), FORM_PARTS)
@require_user(Role.PHOTOGRAPHER)
def check_photos(event_id: int):  # type: ignore[no-untyped-def]
    events.owned_event(current_user(), event_id)
    body = json_body()
    hashes = body.get("sha256")
    if (
        not isinstance(hashes, list)
        or len(hashes) > MAX_CHECK_DIGESTS
        or not all(isinstance(h, str) and SHA256_HEX.fullmatch(h) for h in hashes)
    ):
        raise SnapmatchError(
            f'Send {{"sha256": [64-character hex digests]}} (at most {MAX_CHECK_DIGESTS}).', code="invalid_body"
        )
    wanted = [h.lower() for h in hashes]
    present: set[str] = set()
    with db.connection() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            present.update(
                conn.execute(
                    select(photos.c.sha256).where(photos.c.event_id == event_id, photos.c.sha256.in_(chunk))
                ).scalars()
            )
    return jsonify({"present": [h for h in wanted if h in present], "missing": [h for h in wanted if h not in present]})


def photo_summary(row) -> dict[str, object]:  # type: ignore[no-untyped-def]
    error = {"code": row.error_code, "message": row.error_message} if row.error_code else None
    return {
        "photo_id": row.id,
        "filename": row.filename,
        "status": row.status,
        "faces": row.face_count,
        "error": error,
    }


def _owned_batch(batch_id: str):  # type: ignore[no-untyped-def]
    user = current_user()
    if not BATCH_ID.fullmatch(batch_id):  # never a batch id; PostgreSQL refuses some (NUL) with an error
        raise NotFound("No batch has that id.", code="batch_not_found")
    with db.connection() as conn:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
    if row is None or (row.owner_id != user.id and not user.is_admin):
        raise NotFound(f"No batch {batch_id}.", code="batch_not_found")
    return row


@bp.get("/api/batches/<batch_id>")
@require_user(Role.PHOTOGRAPHER)
def get_batch(batch_id: str):  # type: ignore[no-untyped-def]
    batch = _owned_batch(batch_id)
    with db.connection() as conn:
        rows = conn.execute(select(photos).where(photos.c.batch_id == batch_id).order_by(photos.c.id)).all()
        counts = dict(
            conn.execute(
                select(photos.c.status, func.count()).where(photos.c.batch_id == batch_id).group_by(photos.c.status)
            ).all()
        )
    return jsonify(
        {"id": batch.id, "event_id": batch.event_id, "counts": counts, "photos": [photo_summary(r) for r in rows]}
    )


def owned_batch(batch_id: str):  # type: ignore[no-untyped-def]
    """For the progress blueprint: the batch row if the caller owns it."""
    return _owned_batch(batch_id)


__all__ = ["bp", "owned_batch", "photo_summary", "current_app"]
