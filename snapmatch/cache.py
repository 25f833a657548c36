"""Read caches in Redis shared by every web process: "my photos", the event gallery, event info.

Each entry lives under a *versioned* key. A change bumps the scope's version (INCR) after its
transaction commits; a reader takes the version before it queries the database and writes its
result under that version. A read that started before a change can therefore only fill a key
nobody reads any more, and the next read after the change misses and sees the new rows.
Losing the cache costs one query; it is never the source of truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from redis import Redis, RedisError
from redis.commands.core import Script

from snapmatch import progress
from snapmatch.redis_client import key

log = logging.getLogger(__name__)
T = TypeVar("T")


class CacheName(StrEnum):
    MY_PHOTOS = "my-photos"
    ALL_PHOTOS = "all-photos"
    EVENT = "event"


# Seconds an entry may live; a change is visible at once regardless (versioned keys).
TTL_SECONDS: dict[CacheName, int] = {CacheName.MY_PHOTOS: 30, CacheName.ALL_PHOTOS: 30, CacheName.EVENT: 120}
# Versions outlive entries by far, so a version never goes back to a number whose entry still exists.
VERSION_TTL_SECONDS = 7 * 24 * 3600

# One round trip: the scope's version, the entry stored under it, and the hit or miss counted.
_READ = """
local version = redis.call('GET', KEYS[1]) or '0'
local value = redis.call('GET', KEYS[2] .. version)
if value then redis.call('HINCRBY', KEYS[3], ARGV[1] .. ':hits', 1)
else redis.call('HINCRBY', KEYS[3], ARGV[1] .. ':misses', 1) end
return {version, value}
"""


_scripts: dict[int, Script] = {}


def _read_script(redis: Redis) -> Script:
    script = _scripts.get(id(redis))
    if script is None:
        script = _scripts[id(redis)] = redis.register_script(_READ)
    return script


def _stats_key() -> str:
    return key("cache-stats")


def _version_key(name: CacheName, scope: tuple[object, ...]) -> str:
    return key("cache", "version", name.value, *scope)


def _entry_prefix(name: CacheName, scope: tuple[object, ...], extra: tuple[object, ...]) -> str:
    return key("cache", "entry", name.value, *scope, *extra, "v")


def cached(
    redis: Redis,
    name: CacheName,
    scope: tuple[object, ...],
    load: Callable[[], T],
    extra: tuple[object, ...] = (),
) -> T:
    """The cached value for ``scope`` (plus ``extra``, e.g. a page number), else ``load()`` stored
    under the version read *before* loading. Redis trouble means a plain database read."""
    prefix = _entry_prefix(name, scope, extra)
    try:
        version, raw = _read_script(redis)(
            keys=[_version_key(name, scope), prefix, _stats_key()], args=[name.value], client=redis
        )
    except RedisError as exc:
        log.warning("cache read failed: %s", exc)
        return load()
    if raw is not None:
        return json.loads(raw)
    value = load()
    version_text = version.decode() if isinstance(version, bytes) else str(version)
    try:
        redis.set(prefix + version_text, json.dumps(value), ex=TTL_SECONDS[name])
    except RedisError as exc:
        log.warning("cache write failed: %s", exc)
    return value


def invalidate(redis: Redis, name: CacheName, scopes: list[tuple[object, ...]]) -> None:
    """Make the next read of each scope miss: call after the change has committed."""
    if not scopes:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for scope in scopes:
            pipe.incr(_version_key(name, scope))
            pipe.expire(_version_key(name, scope), VERSION_TTL_SECONDS)
        pipe.execute()
    except RedisError as exc:
        # The entries still expire by TTL; a failed bump is logged, not hidden.
        log.warning("cache invalidation of %s failed: %s", name.value, exc)


def invalidate_my_photos(redis: Redis, event_id: int, user_ids: list[int]) -> None:
    """An attendee's matches changed (match, selfie, not-me, deletion)."""
    invalidate(redis, CacheName.MY_PHOTOS, [(event_id, u) for u in user_ids])
    # Every change of an attendee's matches passes here, so this is the one place that tells their
    # open pages (the event's progress stream; webapp/progress.py forwards it to each attendee).
    if user_ids:
        progress.publish_event(redis, event_id, progress.Stage.MATCHES_CHANGED, userIds=sorted(set(user_ids)))


def invalidate_event_photos(redis: Redis, event_id: int) -> None:
    """The event's processed photos changed (a photo became done, or was deleted)."""
    invalidate(redis, CacheName.ALL_PHOTOS, [(event_id,)])


def invalidate_event(redis: Redis, event_id: int) -> None:
    """The event row changed."""
    invalidate(redis, CacheName.EVENT, [(event_id,)])


def stats(redis: Redis) -> dict[str, dict[str, float]]:
    """Hits, misses and hit ratio per cache since the last clear."""
    raw = {k.decode(): int(v) for k, v in redis.hgetall(_stats_key()).items()}
    out: dict[str, dict[str, float]] = {}
    for name in CacheName:
        hits, misses = raw.get(f"{name.value}:hits", 0), raw.get(f"{name.value}:misses", 0)
        total = hits + misses
        out[name.value] = {
            "hits": hits,
            "misses": misses,
            "hit_ratio": round(hits / total, 4) if total else 0.0,
            "ttl_seconds": TTL_SECONDS[name],
        }
    return out


def clear_all(redis: Redis) -> int:
    """Delete every cached entry (admin action) and bump nothing: entries are gone, versions stay
    so a read in flight cannot resurrect an old list. Returns how many entries were deleted."""
    n = 0
    batch: list[bytes] = []
    for k in redis.scan_iter(match=key("cache", "entry", "*"), count=1000):
        batch.append(k)
        if len(batch) >= 500:
            n += redis.unlink(*batch)
            batch = []
    if batch:
        n += redis.unlink(*batch)
    redis.delete(_stats_key())
    return n
