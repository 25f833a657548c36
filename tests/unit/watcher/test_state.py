"""Local state and the folder lock."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from snapmatch.watcher.files import HashedFile
from snapmatch.watcher.state import FileStatus, FolderLock, FolderLocked, Outcome, StateStore


def test_state_is_kept_per_server_event_and_folder(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite3"
    folder = tmp_path / "card"
    folder.mkdir()
    store = StateStore(db, "https://a.example", 1, folder)
    store.record_hashed("x.jpg", HashedFile("ab" * 32, 10, 123))
    store.mark_uploading(["x.jpg"], "batch1")
    assert store.get("x.jpg").status == FileStatus.UPLOADING
    store.record_outcomes([Outcome("x.jpg", FileStatus.SENT, photo_id=7)])
    store.close()

    again = StateStore(db, "https://a.example", 1, folder)
    record = again.get("x.jpg")
    assert record is not None and record.status == FileStatus.SENT and record.photo_id == 7
    assert record.status.is_final and record.hashed == HashedFile("ab" * 32, 10, 123)
    assert StateStore(db, "https://a.example", 2, folder).get("x.jpg") is None  # another event
    assert StateStore(db, "https://b.example", 1, folder).get("x.jpg") is None  # another server


def test_a_changed_file_starts_over(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite3", "https://a.example", 1, tmp_path)
    store.record_hashed("x.jpg", HashedFile("ab" * 32, 10, 123))
    store.record_outcomes([Outcome("x.jpg", FileStatus.REJECTED, None, "corrupt_image", "bad")])
    store.record_hashed("x.jpg", HashedFile("cd" * 32, 11, 456))
    record = store.get("x.jpg")
    assert record.status == FileStatus.HASHED and record.error_code is None and record.sha256 == "cd" * 32


def _try_lock(lock_dir: str, folder: str, answer) -> None:  # type: ignore[no-untyped-def]
    try:
        FolderLock(Path(lock_dir), Path(folder)).acquire()
        answer.put("acquired")
    except FolderLocked as exc:
        answer.put(f"locked by {exc.holder_pid}")


def test_a_second_watcher_on_the_same_folder_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    folder = tmp_path / "card"
    folder.mkdir()
    lock = FolderLock(tmp_path / "locks", folder)
    lock.acquire()
    ctx = multiprocessing.get_context("spawn")
    answer = ctx.Queue()
    other = ctx.Process(target=_try_lock, args=(str(tmp_path / "locks"), str(folder / "." / ""), answer))
    other.start()
    other.join(30)
    assert answer.get(timeout=5) == f"locked by {os.getpid()}"
    with pytest.raises(FolderLocked):
        FolderLock(tmp_path / "locks", folder).acquire()  # also within one process
    lock.release()
    other = ctx.Process(target=_try_lock, args=(str(tmp_path / "locks"), str(folder), answer))
    other.start()
    other.join(30)
    assert answer.get(timeout=5) == "acquired"
