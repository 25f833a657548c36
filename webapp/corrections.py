"""Attendees correct their matches: "not me", "is me" on a photo, and more reference photos of themselves."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from redis import RedisError

from jobs.queues import enqueue_reference
from snapmatch import cache, corrections, events
from snapmatch.errors import SnapmatchError
from snapmatch.schema import CorrectionVerdict, Role
from webapp.auth import current_user, require_user
from webapp.bodylimits import upload_limit
from webapp.services import redis, settings, storage, upload_tmp_dir

bp = Blueprint("corrections", __name__)
log = logging.getLogger(__name__)


def _correct(photo_id: int, verdict: CorrectionVerdict) -> Response:
    event_id, changed = corrections.correct(
        current_user(), photo_id, verdict, threshold=settings().FACE_MATCH_THRESHOLD
    )
    cache.invalidate_my_photos(redis(), event_id, sorted(changed))
    return Response(status=204)


@bp.post("/api/photos/<id:photo_id>/not-me")
@require_user(Role.ATTENDEE)
def not_me(photo_id: int):  # type: ignore[no-untyped-def]
    return _correct(photo_id, CorrectionVerdict.NOT_ME)


@bp.post("/api/photos/<id:photo_id>/is-me")
@require_user(Role.ATTENDEE)
def is_me(photo_id: int):  # type: ignore[no-untyped-def]
    return _correct(photo_id, CorrectionVerdict.IS_ME)


@bp.post("/api/events/<id:event_id>/selfies")
@upload_limit(files=1)
@require_user(Role.ATTENDEE)
def add_reference(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    events.joined_event(user, event_id)
    upload = request.files.get("file")
    if upload is None:
        raise SnapmatchError("Send the photo in the multipart field `file`.", code="no_file")
    result = corrections.add_reference(
        user, event_id, upload.stream, storage=storage(), settings=settings(), tmp_dir=upload_tmp_dir()
    )
    job_id = None
    try:
        job_id = enqueue_reference(redis(), result.reference_id)
    except RedisError as exc:
        log.warning("reference photo %s not enqueued: %s", result.reference_id, exc)
    return jsonify({"status": "processing", "reference_id": result.reference_id, "job_id": job_id}), 202
