"""The Redis connection of this process and Snapmatch's key naming (everything under REDIS_PREFIX)."""

from __future__ import annotations

import os

from redis import Redis

from snapmatch.settings import get_settings

_clients: dict[tuple[int, str], Redis] = {}


def get_redis(url: str | None = None) -> Redis:
    """One client (with its own pool) per process and URL; a forked child gets a fresh one."""
    url = url or get_settings().REDIS_URL
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        client = Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
        _clients[key] = client
    return client


def key(*parts: object) -> str:
    """A Snapmatch Redis key: ``<REDIS_PREFIX>:part:part``."""
    return ":".join([get_settings().REDIS_PREFIX, *(str(p) for p in parts)])
