"""How far an event's photos are through face indexing ("3,200 of 4,500 photos checked").

One count query per event per second at most: every open attendee page shares the Redis copy.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass

from redis import Redis, RedisError
from sqlalchemy import func, select

from snapmatch import db
from snapmatch.redis_client import key
from snapmatch.schema import PhotoStatus, photos

CACHE_SECONDS = 1
# Photos whose work is over, whatever the outcome: the attendee cares whether they were looked at.
CHECKED = (PhotoStatus.DONE.value, PhotoStatus.FAILED.value, PhotoStatus.QUOTA_EXCEEDED.value)


@dataclass(frozen=True)
class IndexingProgress:
    checked: int
    total: int

    @property
    def finished(self) -> bool:
        return self.checked >= self.total


def count_indexing(event_id: int) -> IndexingProgress:
    with db.connection() as conn:
        rows = conn.execute(
            select(photos.c.status, func.count()).where(photos.c.event_id == event_id).group_by(photos.c.status)
        ).all()
    return IndexingProgress(checked=sum(n for s, n in rows if s in CHECKED), total=sum(n for _s, n in rows))


def indexing_progress(redis: Redis, event_id: int) -> IndexingProgress:
    cache_key = key("cache", "indexing", event_id)
    try:
        raw = redis.get(cache_key)
    except RedisError:
        raw = None
    if raw:
        return IndexingProgress(**json.loads(raw))
    found = count_indexing(event_id)
    with contextlib.suppress(RedisError):  # a cache: the count is still right, only not shared
        redis.set(cache_key, json.dumps(asdict(found)), ex=CACHE_SECONDS)
    return found
