"""Live progress of a batch as Server-Sent Events, read from its Redis Stream (resumable with
Last-Event-ID); the stream ends after ``batch:done`` or when the client goes away."""

from __future__ import annotations

import json
import re
import time

from flask import Blueprint, Response, request, stream_with_context

from snapmatch import metrics, progress
from snapmatch.errors import SnapmatchError
from snapmatch.redis_client import get_blocking_redis
from snapmatch.schema import Role
from webapp.auth import require_user
from webapp.photographer import owned_batch
from webapp.services import settings

bp = Blueprint("progress", __name__)
MAX_STREAM_SECONDS = 1800
STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
HEARTBEAT_MS = 15000


@bp.get("/api/batches/<batch_id>/events")
@require_user(Role.PHOTOGRAPHER)
def batch_events(batch_id: str):  # type: ignore[no-untyped-def]
    owned_batch(batch_id)
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    if not STREAM_ID.match(last_id):
        raise SnapmatchError(
            "Last-Event-ID must be an id this stream sent (like 1700000000000-0).", code="invalid_event_id"
        )
    conn = get_blocking_redis(settings().REDIS_URL)  # blocks up to HEARTBEAT_MS on the server

    def generate():  # type: ignore[no-untyped-def]
        with metrics.PROGRESS_STREAMS_OPEN.track_inprogress():
            yield from _events()

    def _events():  # type: ignore[no-untyped-def]
        nonlocal last_id
        yield "retry: 2000\n\n"
        deadline = time.monotonic() + MAX_STREAM_SECONDS
        while time.monotonic() < deadline:
            entries = progress.read(conn, batch_id, last_id, block_ms=HEARTBEAT_MS)
            if not entries:
                yield ": keep-alive\n\n"
                continue
            for entry_id, data in entries:
                last_id = entry_id
                yield f"id: {entry_id}\nevent: {data['stage']}\ndata: {json.dumps(data)}\n\n"
                if data["stage"] == progress.Stage.BATCH_DONE.value:
                    return

    return Response(
        stream_with_context(generate()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
