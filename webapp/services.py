"""Per-process handles the views use: settings, Redis, storage, the upload temp directory."""

from __future__ import annotations

import os

from flask import current_app
from redis import Redis

from snapmatch.redis_client import get_redis
from snapmatch.settings import Settings
from snapmatch.storage import Storage, open_storage


def settings() -> Settings:
    return current_app.config["SNAPMATCH"]


def redis() -> Redis:
    return get_redis(settings().REDIS_URL)


def storage() -> Storage:
    return open_storage(settings().STORAGE_URL)


def upload_tmp_dir() -> str:
    """Scratch space for uploads being checked; nothing here outlives a request."""
    path = current_app.config.get("UPLOAD_TMP_DIR") or os.path.join(current_app.instance_path, "uploads")
    os.makedirs(path, exist_ok=True)
    return path
