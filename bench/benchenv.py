"""A throw-away Snapmatch environment for one bench run: temp SQLite file, temp media, own Redis DB.

Applied to this process (for domain calls) and returned for the processes the bench starts."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def isolated_environment(prefix: str, redis_url: str, **extra: str) -> tuple[Path, dict[str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    values = {
        "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        "REDIS_URL": redis_url,
        "STORAGE_URL": f"file://{tmp}/media",
        "SNAPMATCH_VAR_DIR": str(tmp),
        # The web process refuses to start without a strong key (webapp/secret_key.py).
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(48),
        **extra,
    }
    os.environ.update(values)
    env = dict(os.environ)
    env.pop("GEMINI_API_KEY", None)
    return tmp, env
