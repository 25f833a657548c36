"""A throw-away Snapmatch environment for one bench run: temp SQLite file, temp media, own Redis DB.

Applied to this process (for domain calls) and returned for the processes the bench starts."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict[str, str], log_path: Path, extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """The Procfile's web process (gunicorn.conf.py, plus ``extra_args``) on a free loopback port, in
    its own process group; returns once /healthz answers (or raises with the end of its log)."""
    import requests

    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - the server's log, open while it runs
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
         *extra_args, "webapp:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return server, base
        if server.poll() is not None:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # never leave a half-started server behind
    print(log_path.read_text(errors="replace")[-3000:])
    raise RuntimeError(f"gunicorn did not come up; see {log_path}")
