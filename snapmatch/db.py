"""Database access: one engine per process (fork-safe), transactions, and migrations.

SQLite (default, a file under ./var) and PostgreSQL through psycopg 3 share every query.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from snapmatch.settings import get_settings

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """Send plain ``postgresql://`` URLs to psycopg 3 (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _make_engine(url: str) -> Engine:
    settings = get_settings()
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        sa_url,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_pre_ping=True,
    )


def get_engine(url: str | None = None) -> Engine:
    """The engine for this process; a forked child (RQ work horse) gets its own pool.

    A child reuses the engine it inherited (dialect already set up) with a new, empty pool:
    SQLAlchemy's ``dispose(close=False)``, which leaves the parent's connections alone.
    """
    url = url or get_settings().DATABASE_URL
    pid = os.getpid()
    key = (pid, url)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                inherited = next((e for (p, u), e in _engines.items() if u == url and p != pid), None)
                if inherited is not None:
                    inherited.dispose(close=False)
                    engine = inherited
                else:
                    engine = _make_engine(url)
                _engines[key] = engine
    return engine


def close_connections() -> None:
    """Close this process's pooled connections but keep its engines (before forking children)."""
    with _lock:
        for (pid, _), engine in _engines.items():
            if pid == os.getpid():
                engine.dispose()


def dispose_all() -> None:
    """Drop every pool and engine of this process (tests, shutdown)."""
    close_connections()
    with _lock:
        _engines.clear()


@contextmanager
def transaction() -> Iterator[Connection]:
    """A connection in a transaction: committed on success, rolled back on error."""
    with get_engine().begin() as conn:
        yield conn


@contextmanager
def connection() -> Iterator[Connection]:
    """A connection for reads."""
    with get_engine().connect() as conn:
        yield conn


def is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent)."""
    import logging

    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin is noise

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["engine"] = get_engine(url)
    command.upgrade(cfg, revision)
