"""Live progress as Server-Sent Events, read from Redis Streams and resumable with Last-Event-ID:
a batch's stream for its photographer, and an event's stream for a joined attendee ("my photos"
changed, indexing progress).

A stream spends its life waiting on Redis; the web server runs gevent workers (gunicorn.conf.py),
so an open stream is a parked greenlet, not a request thread.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, request
from redis import Redis

from snapmatch import events, metrics, progress
from snapmatch.errors import SnapmatchError
from snapmatch.indexing import indexing_progress
from snapmatch.schema import Role
from webapp.auth import current_user, require_user
from webapp.photographer import owned_batch
from webapp.services import redis, settings
from webapp.stream_hub import Subscription, get_hub

bp = Blueprint("progress", __name__)
MAX_STREAM_SECONDS = 1800  # then the stream ends and EventSource reconnects with Last-Event-ID
STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
HEARTBEAT_MS = 15000
HEARTBEAT_SECONDS = HEARTBEAT_MS / 1000
READ_WAIT_SECONDS = 5.0
INDEXING_EVERY_SECONDS = 2.0


def _last_event_id() -> str | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw and not STREAM_ID.match(raw):
        raise SnapmatchError(
            "Last-Event-ID must be an id this stream sent (like 1700000000000-0).", code="invalid_event_id"
        )
    return raw or None


def _frame(data: dict, event: str, entry_id: str | None = None) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


def _sse(body: Iterator[str]) -> Response:
    return Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _follow(
    conn: Redis,
    stream: str,
    last_id: str,
    frames: Callable[[str, dict], Iterator[str | None]],
    idle: Callable[[], Iterator[str]] = lambda: iter(()),
    wait_seconds: float = READ_WAIT_SECONDS,
) -> Iterator[str]:
    """Entries of ``stream`` after ``last_id`` until ``frames`` gives ``None`` (end) or time runs out.

    ``frames(entry_id, data)`` turns one entry into SSE frames; ``idle()`` may add frames between
    reads. A comment line goes out after HEARTBEAT_SECONDS of silence, so proxies and browsers keep
    the connection and a vanished client is noticed on the next write."""
    sub = Subscription(get_hub(settings().REDIS_URL), stream, last_id)
    sub.start(conn)

    def body() -> Iterator[str]:
        with metrics.PROGRESS_STREAMS_OPEN.track_inprogress():
            yield from follow()

    def follow() -> Iterator[str]:
        try:
            yield "retry: 2000\n\n"
            deadline = time.monotonic() + MAX_STREAM_SECONDS
            last_write = time.monotonic()
            while time.monotonic() < deadline:
                for entry_id, data in sub.entries(timeout=wait_seconds):
                    for frame in frames(entry_id, data):
                        if frame is None:
                            return
                        last_write = time.monotonic()
                        yield frame
                for frame in idle():
                    last_write = time.monotonic()
                    yield frame
                if time.monotonic() - last_write >= HEARTBEAT_SECONDS:
                    last_write = time.monotonic()
                    yield ": keep-alive\n\n"
        finally:
            sub.close()

    return body()


@bp.get("/api/batches/<batch_id>/events")
@require_user(Role.PHOTOGRAPHER)
def batch_events(batch_id: str):  # type: ignore[no-untyped-def]
    owned_batch(batch_id)
    last_id = _last_event_id() or "0"

    def frames(entry_id: str, data: dict) -> Iterator[str]:
        yield _frame(data, data["stage"], entry_id)
        if data["stage"] == progress.Stage.BATCH_DONE.value:
            yield None  # type: ignore[misc]

    return _sse(_follow(redis(), progress.stream_key(batch_id), last_id, frames))


@bp.get("/api/events/<id:event_id>/events")
@require_user(Role.ATTENDEE)
def attendee_events(event_id: int):  # type: ignore[no-untyped-def]
    """For a joined attendee: ``my-photos`` when their matches change (fetch GET /api/my-photos
    again), and ``indexing`` ({"checked", "total"}) while the event's photos are being looked at."""
    user = current_user()
    events.joined_event(user, event_id)
    conn = redis()
    stream = progress.event_stream_key(event_id)
    last_id = _last_event_id()
    opening: list[str] = []
    if last_id is None:
        # A fresh page: start at the stream's end and tell it to load "my photos" once, with an id,
        # so nothing that happens from here on can fall between that load and this stream.
        newest = conn.xrevrange(stream, count=1)
        last_id = (newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]) if newest else "0"
        opening.append(_frame({"stage": "my-photos:changed"}, "my-photos", last_id if newest else None))

    def frames(entry_id: str, data: dict) -> Iterator[str]:
        if data.get("stage") == progress.Stage.MATCHES_CHANGED.value and user.id in data.get("userIds", ()):
            yield _frame({"stage": "my-photos:changed"}, "my-photos", entry_id)

    shown: list[object] = [None]
    next_check = [0.0]

    def idle() -> Iterator[str]:
        if time.monotonic() < next_check[0]:
            return
        next_check[0] = time.monotonic() + INDEXING_EVERY_SECONDS
        found = indexing_progress(conn, event_id)
        if found != shown[0]:
            shown[0] = found
            yield _frame({"checked": found.checked, "total": found.total}, "indexing")

    def body(follow: Iterator[str]) -> Iterator[str]:
        yield from opening
        yield from follow

    return _sse(body(_follow(conn, stream, last_id, frames, idle, wait_seconds=INDEXING_EVERY_SECONDS)))
