"""Read cache for "my photos" in Redis: filled on read, deleted whenever that attendee's matches change.

Losing it costs one query; it is never the source of truth.
"""

from __future__ import annotations

import json
import logging

from redis import Redis, RedisError

from snapmatch import progress
from snapmatch.redis_client import key

log = logging.getLogger(__name__)
TTL_SECONDS = 300


def my_photos_key(event_id: int, user_id: int) -> str:
    return key("cache", "my-photos", event_id, user_id)


def get_json(redis: Redis, cache_key: str) -> object | None:
    try:
        raw = redis.get(cache_key)
    except RedisError as exc:
        log.warning("cache read failed: %s", exc)
        return None
    return json.loads(raw) if raw else None


def set_json(redis: Redis, cache_key: str, value: object, ttl: int = TTL_SECONDS) -> None:
    try:
        redis.set(cache_key, json.dumps(value), ex=ttl)
    except RedisError as exc:
        log.warning("cache write failed: %s", exc)


def invalidate_my_photos(redis: Redis, event_id: int, user_ids: list[int]) -> None:
    """Forget these attendees' cached "my photos", and tell their open pages to fetch it again."""
    if not user_ids:
        return
    try:
        redis.delete(*(my_photos_key(event_id, u) for u in user_ids))
    except RedisError as exc:
        log.warning("cache invalidation failed: %s", exc)
    # Every change of an attendee's matches passes here, so this is the one place that announces it.
    progress.publish_event(redis, event_id, progress.Stage.MATCHES_CHANGED, userIds=sorted(set(user_ids)))


def clear_all(redis: Redis) -> int:
    """Delete every cached entry (admin action); returns how many."""
    n = 0
    for k in redis.scan_iter(match=key("cache", "*"), count=1000):
        n += redis.delete(k)
    return n
