"""Worker liveness that survives nothing: a key per worker with a short TTL, refreshed by a thread.

RQ notices a SIGKILLed worker only when its heartbeat times out (minutes); this key is gone in
seconds, so the sweeper can tell a running job from an abandoned one quickly.
"""

from __future__ import annotations

import logging
import threading

from redis import Redis, RedisError

from snapmatch.redis_client import key

log = logging.getLogger(__name__)
TTL_SECONDS = 10
REFRESH_SECONDS = 3


def liveness_key(worker_name: str) -> str:
    return key("worker-alive", worker_name)


def is_worker_alive(redis: Redis, worker_name: str) -> bool:
    return bool(redis.exists(liveness_key(worker_name)))


class LivenessBeacon(threading.Thread):
    """Refreshes the key until stopped; dies with the process, which is the point."""

    def __init__(self, redis: Redis, worker_name: str) -> None:
        super().__init__(name="liveness-beacon", daemon=True)
        self.redis = redis
        self.worker_name = worker_name
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.redis.set(liveness_key(self.worker_name), "1", ex=TTL_SECONDS)
            except RedisError as exc:
                log.warning("liveness beacon: %s", exc)
            self._stop_event.wait(REFRESH_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            self.redis.delete(liveness_key(self.worker_name))
        except RedisError as exc:
            log.warning("liveness beacon: could not clear key: %s", exc)
