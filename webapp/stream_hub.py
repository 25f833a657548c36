"""One Redis reader per web process, fanning stream entries out to every open SSE response.

An open stream costs a queue, not a Redis connection: the hub's single XREAD covers every stream
someone is watching. A subscriber first reads what it missed (after its Last-Event-ID) itself, then
takes the hub's entries newer than the last one it delivered, so nothing is skipped or repeated.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator

from redis import Redis, RedisError

from snapmatch import progress
from snapmatch.redis_client import get_blocking_redis

log = logging.getLogger(__name__)
HUB_BLOCK_MS = 500  # how soon a newly watched stream joins the hub's read
CATCH_UP_PAGE = 500


def stream_id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """What one SSE response reads: entries of one stream after ``after_id``, in order, once each."""

    def __init__(self, hub: StreamHub, stream: str, after_id: str) -> None:
        self.hub, self.stream = hub, stream
        self.last = stream_id_key(after_id)
        self.inbox: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._backlog: list[tuple[str, dict]] = []

    def start(self, conn: Redis) -> None:
        """Join the hub, then read the backlog directly: together they cover everything after ``after_id``."""
        self.hub.add(self)
        after = f"{self.last[0]}-{self.last[1]}"
        while True:
            page = progress.read_stream(conn, self.stream, after, count=CATCH_UP_PAGE)
            self._backlog.extend(page)
            if len(page) < CATCH_UP_PAGE:
                break
            after = page[-1][0]

    def entries(self, timeout: float) -> Iterator[tuple[str, dict]]:
        """New entries (waiting up to ``timeout`` seconds for the first one)."""
        pending, self._backlog = self._backlog, []
        if not pending:
            try:
                pending.append(self.inbox.get(timeout=timeout))
            except queue.Empty:
                return
        while True:
            try:
                pending.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        for entry_id, data in pending:
            key = stream_id_key(entry_id)
            if key > self.last:
                self.last = key
                yield entry_id, data

    def close(self) -> None:
        self.hub.remove(self)


class StreamHub:
    """The per-process reader: one XREAD over every watched stream, entries put in each watcher's inbox."""

    def __init__(self, conn: Redis) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.watchers: dict[str, set[Subscription]] = {}
        self.positions: dict[str, str] = {}
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream-hub", daemon=True)
        self.thread.start()

    def add(self, sub: Subscription) -> None:
        newest = self.conn.xrevrange(sub.stream, count=1)
        start = (newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]) if newest else "0-0"
        with self.lock:
            if sub.stream not in self.positions:
                self.positions[sub.stream] = start
            self.watchers.setdefault(sub.stream, set()).add(sub)
        self.wake.set()

    def remove(self, sub: Subscription) -> None:
        with self.lock:
            subs = self.watchers.get(sub.stream)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.watchers[sub.stream]
                    self.positions.pop(sub.stream, None)

    @property
    def watched(self) -> int:
        with self.lock:
            return sum(len(s) for s in self.watchers.values())

    def _run(self) -> None:
        while True:
            with self.lock:
                positions = dict(self.positions)
            if not positions:
                self.wake.wait(5)
                self.wake.clear()
                continue
            try:
                result = self.conn.xread(positions, count=CATCH_UP_PAGE, block=HUB_BLOCK_MS)
            except RedisError as exc:
                log.warning("stream hub: Redis read failed, retrying in 1 s: %s", exc)
                time.sleep(1)
                continue
            for stream, entries in result or []:
                stream = stream.decode() if isinstance(stream, bytes) else stream
                decoded = [progress.decode_entry(entry_id, fields) for entry_id, fields in entries]
                with self.lock:
                    if stream in self.positions and decoded:
                        self.positions[stream] = decoded[-1][0]
                    subs = list(self.watchers.get(stream, ()))
                for sub in subs:
                    for item in decoded:
                        sub.inbox.put(item)


_hubs: dict[int, StreamHub] = {}
_hubs_lock = threading.Lock()


def get_hub(redis_url: str) -> StreamHub:
    """This process's hub (a forked child makes its own), with its own Redis connection."""
    with _hubs_lock:
        hub = _hubs.get(os.getpid())
        if hub is None:
            hub = _hubs[os.getpid()] = StreamHub(get_blocking_redis(redis_url))
        return hub
