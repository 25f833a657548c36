"""Local state: what was sent from which folder to which event (SQLite in the user's state directory),
and the lock that keeps a second watcher off a folder.

A file is recorded ``sent`` only after the server acknowledged it. Before a request it is marked
``uploading``; a row left ``hashed`` or ``uploading`` by a crash is uncertain and is resolved with
the server's hash check before anything is sent again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from snapmatch.watcher.files import HashedFile, Observation


class FileStatus(StrEnum):
    HASHED = "hashed"  # hash known, not yet acknowledged by the server
    UPLOADING = "uploading"  # a request with it may be in flight (uncertain after a crash)
    SENT = "sent"  # the server answered "queued"
    DUPLICATE = "duplicate"  # the server had it already (hash check "present" or upload "duplicate")
    REJECTED = "rejected"  # the server refused the file itself (reason recorded); not retried
    FAILED = "failed"  # gave up on it in a run (reason recorded); retried by the next run

    @property
    def is_final(self) -> bool:
        """Nothing more to do for this file as long as it does not change."""
        return self in (FileStatus.SENT, FileStatus.DUPLICATE, FileStatus.REJECTED)


@dataclass(frozen=True)
class FileRecord:
    relpath: str
    size: int
    mtime_ns: int
    sha256: str
    status: FileStatus
    photo_id: int | None
    error_code: str | None
    error_message: str | None

    @property
    def observation(self) -> Observation:
        return Observation(self.size, self.mtime_ns)

    @property
    def hashed(self) -> HashedFile:
        return HashedFile(self.sha256, self.size, self.mtime_ns)


@dataclass(frozen=True)
class Outcome:
    relpath: str
    status: FileStatus
    photo_id: int | None = None
    error_code: str | None = None
    error_message: str | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    root TEXT NOT NULL,
    UNIQUE (server, event_id, root)
);
CREATE TABLE IF NOT EXISTS files (
    folder_id INTEGER NOT NULL REFERENCES folders(id),
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    photo_id INTEGER,
    batch_id TEXT,
    error_code TEXT,
    error_message TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (folder_id, relpath)
);
"""


def folder_key(root: Path) -> str:
    """The folder's identity: absolute, symlinks resolved, case-folded where the OS is case-insensitive."""
    return os.path.normcase(str(root.resolve()))


class StateStore:
    """One SQLite file shared by every folder/server/event; one connection, used under a lock."""

    def __init__(self, path: Path, server: str, event_id: int, root: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # a lost last write is resolved by the hash check
        self._conn.executescript(_SCHEMA)
        key = (server, event_id, folder_key(root))
        with self._transaction() as c:
            c.execute("INSERT OR IGNORE INTO folders (server, event_id, root) VALUES (?, ?, ?)", key)
            self.folder_id = c.execute(
                "SELECT id FROM folders WHERE server = ? AND event_id = ? AND root = ?", key
            ).fetchone()[0]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get(self, relpath: str) -> FileRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT relpath, size, mtime_ns, sha256, status, photo_id, error_code, error_message "
                "FROM files WHERE folder_id = ? AND relpath = ?",
                (self.folder_id, relpath),
            ).fetchone()
        return None if row is None else FileRecord(*row[:4], FileStatus(row[4]), *row[5:])

    def record_hashed(self, relpath: str, hashed: HashedFile) -> None:
        with self._transaction() as c:
            c.execute(
                "INSERT INTO files (folder_id, relpath, size, mtime_ns, sha256, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (folder_id, relpath) DO UPDATE SET "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
                "status = excluded.status, photo_id = NULL, batch_id = NULL, error_code = NULL, "
                "error_message = NULL, updated_at = excluded.updated_at",
                (self.folder_id, relpath, hashed.size, hashed.mtime_ns, hashed.sha256, FileStatus.HASHED, time.time()),
            )

    def mark_uploading(self, relpaths: Iterable[str], batch_id: str) -> None:
        now = time.time()
        with self._transaction() as c:
            c.executemany(
                "UPDATE files SET status = ?, batch_id = ?, updated_at = ? WHERE folder_id = ? AND relpath = ?",
                [(FileStatus.UPLOADING, batch_id, now, self.folder_id, r) for r in relpaths],
            )

    def record_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        now = time.time()
        with self._transaction() as c:
            c.executemany(
                "UPDATE files SET status = ?, photo_id = COALESCE(?, photo_id), error_code = ?, error_message = ?, "
                "updated_at = ? WHERE folder_id = ? AND relpath = ?",
                [
                    (o.status, o.photo_id, o.error_code, o.error_message, now, self.folder_id, o.relpath)
                    for o in outcomes
                ],
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT status, COUNT(*) FROM files WHERE folder_id = ? GROUP BY status", (self.folder_id,)
            ).fetchall()
        return dict(rows)


class FolderLocked(Exception):
    def __init__(self, holder_pid: str) -> None:
        super().__init__(holder_pid)
        self.holder_pid = holder_pid


class FolderLock:
    """An exclusive OS lock (fcntl on Unix, msvcrt on Windows) on a file named after the folder, in the
    state directory (never in the photographer's folder). The OS drops it when the process dies, even
    by SIGKILL, so a crashed watcher never blocks the next one. The file holds the holder's pid."""

    def __init__(self, lock_dir: Path, root: Path) -> None:
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(folder_key(root).encode()).hexdigest()[:24]
        self.path = lock_dir / f"{name}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            _lock_nonblocking(f)
        except OSError:
            holder = "unknown"
            with contextlib.suppress(OSError):  # Windows forbids reading a locked region
                f.seek(0)
                holder = f.read().strip() or holder
            f.close()
            raise FolderLocked(holder) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            _unlock(self._file)
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_nonblocking(f: IO[str]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: IO[str]) -> None:
        with contextlib.suppress(OSError):
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_nonblocking(f: IO[str]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f: IO[str]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
