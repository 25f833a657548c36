"""Attendee API: join with the access code, one selfie, "my photos", the event gallery; and the
photo endpoints shared by owners, matched attendees and admins."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from redis import RedisError
from sqlalchemy import func, select

from jobs.queues import enqueue_provider_deletions, enqueue_selfie
from snapmatch import cache, corrections, db, events, selfies
from snapmatch.analysis import records as analysis_records
from snapmatch.errors import NotFound, SnapmatchError
from snapmatch.schema import PhotoStatus, Role, faces, photos
from webapp.auth import current_user, require_user
from webapp.bodylimits import upload_limit
from webapp.errors import json_body
from webapp.params import id_arg, int_arg
from webapp.request_limits import my_photos_rate_limit
from webapp.services import redis, settings, storage, upload_tmp_dir

bp = Blueprint("attendee", __name__)
log = logging.getLogger(__name__)
MAX_PAGE = 100_000
MAX_PER_PAGE = 200


@bp.post("/api/events/<id:event_id>/join")
@require_user()
def join(event_id: int):  # type: ignore[no-untyped-def]
    body = json_body()
    event = events.join_event(current_user(), event_id, str(body.get("access_code", "")))
    return jsonify({"event_id": event.id, "name": event.name, "joined": True})


@bp.put("/api/events/<id:event_id>/selfie")
@upload_limit(files=1)
@require_user(Role.ATTENDEE)
def put_selfie(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    events.joined_event(user, event_id)
    upload = request.files.get("file")
    if upload is None:
        raise SnapmatchError("Send the selfie in the multipart field `file`.", code="no_file")
    result = selfies.put_selfie(
        user, event_id, upload.stream, storage=storage(), settings=settings(), tmp_dir=upload_tmp_dir()
    )
    cache.invalidate_my_photos(redis(), event_id, [user.id, *result.changed_users])
    job_id = None
    try:
        job_id = enqueue_selfie(redis(), result.selfie_id, result.image_key, result.generation)
        if result.stale_provider_face_id:
            enqueue_provider_deletions(redis(), event_id)  # recorded in the database: the sweeper also does it
    except RedisError as exc:
        log.warning("selfie %s not enqueued, the sweeper will retry: %s", result.selfie_id, exc)
    return jsonify({"status": "processing", "selfie_id": result.selfie_id, "job_id": job_id}), 202


def _selfie_status(user, event_id: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    row = selfies.get_selfie(user, event_id)
    if row is None:
        return {"status": "missing"}
    out: dict[str, object] = {"status": row.status}
    if row.error_code:
        out["error"] = {"code": row.error_code, "message": row.error_message}
    return out


@bp.get("/api/events/<id:event_id>/selfie")
@require_user(Role.ATTENDEE)
def get_selfie(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    events.joined_event(user, event_id)
    status = _selfie_status(user, event_id)
    if status["status"] == "missing":
        raise NotFound("You have not uploaded a selfie for this event.", code="selfie_not_found")
    return jsonify(status)


@bp.delete("/api/events/<id:event_id>/selfie")
@require_user(Role.ATTENDEE)
def delete_selfie(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    events.joined_event(user, event_id)
    deleted = selfies.delete_selfie(user, event_id, storage=storage())
    cache.invalidate_my_photos(redis(), event_id, [user.id, *deleted.changed_users])
    if deleted.provider_face_id:
        try:
            enqueue_provider_deletions(redis(), event_id)
        except RedisError as exc:  # the deletion is recorded in the database: the sweeper enqueues it
            log.warning("provider deletion for event %s not enqueued now, the sweeper will: %s", event_id, exc)
    return Response(status=204)


def _event_id_arg() -> int:
    return id_arg("event_id")


@bp.get("/api/my-photos")
@my_photos_rate_limit
@require_user(Role.ATTENDEE)
def my_photos():  # type: ignore[no-untyped-def]
    user = current_user()
    event_id = _event_id_arg()
    # The whole answer is cached: membership is never taken back, and a selfie's status change
    # invalidates it like a match does. A refused read raises inside and is never cached.
    return jsonify(
        cache.cached(redis(), cache.CacheName.MY_PHOTOS, (event_id, user.id), lambda: _my_photos(user, event_id))
    )


def _my_photos(user, event_id: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    events.joined_event(user, event_id)
    found = corrections.my_photos(user, event_id)
    return {"status": _selfie_status(user, event_id)["status"], "photos": found["photos"], "maybe": found["maybe"]}


@bp.get("/api/all-photos")
@require_user()
def all_photos():  # type: ignore[no-untyped-def]
    event_id = _event_id_arg()
    events.viewable_event(current_user(), event_id)
    page = int_arg("page", 1, minimum=1, maximum=MAX_PAGE)
    per_page = int_arg("per_page", 50, minimum=1, maximum=MAX_PER_PAGE)
    total, rows = cache.cached(
        redis(),
        cache.CacheName.ALL_PHOTOS,
        (event_id,),
        lambda: _event_photos_page(event_id, page, per_page),
        (page, per_page),
    )
    return jsonify({"event_id": event_id, "page": page, "per_page": per_page, "total": total, "photos": rows})


def _event_photos_page(event_id: int, page: int, per_page: int) -> tuple[int, list[dict[str, object]]]:
    done = (photos.c.event_id == event_id) & (photos.c.status == PhotoStatus.DONE.value)
    with db.connection() as conn:
        total = conn.execute(select(func.count()).select_from(photos).where(done)).scalar()
        rows = conn.execute(
            select(photos.c.id, photos.c.width, photos.c.height, photos.c.face_count)
            .where(done)
            .order_by(photos.c.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    return total, [
        {
            "photo_id": r.id,
            "thumbnail_url": f"/api/photos/{r.id}/thumbnail",
            "width": r.width,
            "height": r.height,
            "faces": r.face_count,
        }
        for r in rows
    ]


def _visible_photo(photo_id: int):  # type: ignore[no-untyped-def]
    with db.connection() as conn:
        row = conn.execute(select(photos).where(photos.c.id == photo_id)).first()
    if row is None or not events.can_view_photo(current_user(), row):
        raise NotFound(f"No photo {photo_id}.", code="photo_not_found")
    return row


@bp.get("/api/photos/<id:photo_id>")
@require_user()
def get_photo(photo_id: int):  # type: ignore[no-untyped-def]
    row = _visible_photo(photo_id)
    with db.connection() as conn:
        face_rows = conn.execute(
            select(faces.c.left, faces.c.top, faces.c.width, faces.c.height, faces.c.score)
            .where(faces.c.photo_id == photo_id)
            .order_by(faces.c.face_index)
        ).all()
    error = {"code": row.error_code, "message": row.error_message} if row.error_code else None
    return jsonify(
        {
            "id": row.id,
            "event_id": row.event_id,
            "filename": row.filename,
            "status": row.status,
            "width": row.width,
            "height": row.height,
            "quality": {"sharpness": row.sharpness, "exposure": row.exposure},
            "faces": [
                {
                    "box": {"left": f.left, "top": f.top, "width": f.width, "height": f.height},
                    "score": round(f.score, 3),
                }
                for f in face_rows
            ],
            "analysis": analysis_records.as_api(analysis_records.get(photo_id)),
            "error": error,
        }
    )


def _send(key: str | None, content_type: str):  # type: ignore[no-untyped-def]
    if key is None:
        raise SnapmatchError("The photo is still being processed; try again shortly.", code="not_ready", status=409)
    response = Response(storage().get(key), mimetype=content_type)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/api/photos/<id:photo_id>/thumbnail")
@require_user()
def get_thumbnail(photo_id: int):  # type: ignore[no-untyped-def]
    return _send(_visible_photo(photo_id).thumbnail_key, "image/jpeg")


@bp.get("/api/photos/<id:photo_id>/original")
@require_user()
def get_original(photo_id: int):  # type: ignore[no-untyped-def]
    row = _visible_photo(photo_id)
    return _send(row.original_key, row.content_type)
