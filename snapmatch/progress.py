"""Progress events in Redis Streams: per batch (for the photographer) and per event (for attendees);
jobs append, the SSE endpoints read with Last-Event-ID.

Progress is a convenience; the database stays the source of truth, so a lost event loses no work.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum

from redis import Redis, RedisError

from snapmatch.redis_client import key, max_block_ms

log = logging.getLogger(__name__)
STREAM_MAXLEN = 20_000
STREAM_TTL_SECONDS = 3 * 24 * 3600


class Stage(StrEnum):
    RECEIVED = "ingestion:received"
    QUEUED = "photo:queued"
    STARTED = "photo:started"
    FACES_INDEXED = "faces:indexed"
    ANALYSIS_DONE = "analysis:done"
    ANALYSIS_WARNING = "analysis:warning"  # e.g. {"warning": "gemini-quota-exceeded", "retryAfter": 3.0}
    ANALYSIS_FAILED = "analysis:failed"  # the photo stays done; its analysis ended quota_exceeded or failed
    DONE = "photo:done"
    FAILED = "photo:failed"
    BATCH_DONE = "batch:done"
    PIPELINE_ERROR = "pipeline:error"
    # Per event: these attendees' "my photos" changed (new matches, selfie ready, selfie removed).
    MATCHES_CHANGED = "matches:changed"


def stream_key(batch_id: str) -> str:
    return key("progress", "batch", batch_id)


def event_stream_key(event_id: int) -> str:
    return key("progress", "event", event_id)


def publish_event(redis: Redis, event_id: int, stage: Stage, **extra: object) -> None:
    """Append one event to the event's stream (attendee pages listen there); never raises."""
    try:
        pipe = redis.pipeline(transaction=False)
        payload = {"stage": stage.value, "eventId": event_id, **extra}
        pipe.xadd(event_stream_key(event_id), {"data": json.dumps(payload)}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(event_stream_key(event_id), STREAM_TTL_SECONDS)
        pipe.execute()
    except RedisError as exc:
        log.warning("progress event %s for event %s not published: %s", stage, event_id, exc)


def publish(redis: Redis, batch_id: str | None, stage: Stage, photo_id: int | None = None, **extra: object) -> None:
    publish_many(redis, batch_id, [(stage, photo_id, extra)])


def publish_many(redis: Redis, batch_id: str | None, events: list[tuple[Stage, int | None, dict[str, object]]]) -> None:
    """Append events to the batch's stream in one round trip (an upload request has one per file)."""
    if not batch_id or not events:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for stage, photo_id, extra in events:
            payload = {"stage": stage.value, "batchId": batch_id, "photoId": photo_id, **extra}
            pipe.xadd(stream_key(batch_id), {"data": json.dumps(payload)}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(stream_key(batch_id), STREAM_TTL_SECONDS)
        pipe.execute()
    except RedisError as exc:
        log.warning("%d progress events for batch %s not published: %s", len(events), batch_id, exc)


def read(
    redis: Redis, batch_id: str, last_id: str = "0", block_ms: int = 0, count: int = 500
) -> list[tuple[str, dict]]:
    """The batch's events after ``last_id`` (blocking up to ``block_ms`` when there are none)."""
    return read_stream(redis, stream_key(batch_id), last_id, block_ms, count)


def read_stream(
    redis: Redis, stream: str, last_id: str = "0", block_ms: int = 0, count: int = 500
) -> list[tuple[str, dict]]:
    """Entries of ``stream`` after ``last_id``, oldest first (blocking up to ``block_ms`` when there are none).

    The block is capped below the client's socket timeout, so a quiet wait returns ``[]`` instead
    of dying as a socket timeout; pass ``redis_client.get_blocking_redis()`` to wait the full block.
    """
    if block_ms:
        cap = max_block_ms(redis)
        block_ms = block_ms if cap is None else min(block_ms, cap)
    result = redis.xread({stream: last_id}, count=count, block=block_ms or None)
    return [decode_entry(entry_id, fields) for _stream, entries in result or [] for entry_id, fields in entries]


def decode_entry(entry_id: bytes | str, fields: dict) -> tuple[str, dict]:
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    raw = fields.get(b"data") or fields.get("data")
    return entry_id, json.loads(raw)
