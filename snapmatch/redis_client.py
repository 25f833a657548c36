"""The Redis connection of this process and Snapmatch's key naming (everything under REDIS_PREFIX)."""

from __future__ import annotations

import os

from redis import BlockingConnectionPool, Redis

from snapmatch.settings import get_settings

# An ordinary command that gets no answer for this long means the server or the network is gone.
SOCKET_TIMEOUT_SECONDS = 10
# Blocking reads (XREAD BLOCK for progress streams) wait on the server by design; their client's
# socket timeout must be longer than any block, or every quiet wait ends as a socket timeout.
BLOCKING_SOCKET_TIMEOUT_SECONDS = 60

POOL_MAX_CONNECTIONS = 100
POOL_WAIT_SECONDS = 5

_clients: dict[tuple[int, str, float], Redis] = {}


def _client(url: str | None, socket_timeout: float) -> Redis:
    url = url or get_settings().REDIS_URL
    key = (os.getpid(), url, socket_timeout)
    client = _clients.get(key)
    if client is None:
        # A burst of concurrent requests (gevent web workers) waits for a free connection instead of
        # failing with "Too many connections" once the pool's 100 are all in use.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        client = Redis(connection_pool=pool)
        _clients[key] = client
    return client


def get_redis(url: str | None = None) -> Redis:
    """One client (with its own pool) per process and URL; a forked child gets a fresh one."""
    return _client(url, SOCKET_TIMEOUT_SECONDS)


def get_blocking_redis(url: str | None = None) -> Redis:
    """A client for commands that block on the server (``progress.read`` with ``block_ms``), whose
    socket timeout outlasts the block; kept apart so ordinary commands still fail fast."""
    return _client(url, BLOCKING_SOCKET_TIMEOUT_SECONDS)


def max_block_ms(client: Redis, margin_seconds: float = 2.0) -> int | None:
    """The longest server-side block this client can wait through without a socket timeout
    (None: the client has no socket timeout)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return None
    return max(1, int(max(timeout - margin_seconds, timeout / 2) * 1000))


def key(*parts: object) -> str:
    """A Snapmatch Redis key: ``<REDIS_PREFIX>:part:part``."""
    return ":".join([get_settings().REDIS_PREFIX, *(str(p) for p in parts)])
