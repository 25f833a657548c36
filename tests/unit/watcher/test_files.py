"""Which files the watcher sends and when a file counts as complete."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from snapmatch.watcher.files import (
    FileChanged,
    Observation,
    StabilityTracker,
    hash_file,
    is_candidate,
    looks_complete,
    read_unchanged,
    scan,
)
from tests.images import jpeg, photo_as

ROOT = Path("/photos")


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("IMG_0001.JPG", True),
        ("day1/ceremony/IMG_0002.jpeg", True),
        ("a.png", True),
        ("a.webp", True),
        ("IMG_0001.CR3", False),  # raw files: the server does not take them
        ("notes.txt", False),
        (".IMG_0001.jpg", False),  # hidden
        ("._IMG_0001.jpg", False),  # macOS resource fork
        (".thumbnails/IMG_0001.jpg", False),  # hidden folder
        ("~$draft.jpg", False),
        ("IMG_0001.jpg~", False),
        ("IMG_0001.jpg.part", False),
        ("IMG_0001.jpg.tmp", False),
        ("IMG_0001.jpg.crdownload", False),
    ],
)
def test_candidates(relpath: str, expected: bool) -> None:
    assert is_candidate(ROOT, ROOT / relpath) is expected


def test_a_path_outside_the_folder_is_never_a_candidate() -> None:
    assert not is_candidate(ROOT, Path("/elsewhere/IMG_0001.jpg"))


def test_scan_is_recursive_and_skips_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for rel in ("x.jpg", "a/y.jpg", "a/b/z.png", ".cache/w.jpg", "a/readme.txt"):
        (tmp_path / rel).write_bytes(b"x")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in scan(tmp_path)) == ["a/b/z.png", "a/y.jpg", "x.jpg"]


def test_a_file_copied_long_ago_is_ready_at_once() -> None:
    tracker = StabilityTracker(quiet_seconds=2)
    now = 1_000_000.0
    quiet = tracker.quiet_for("a.jpg", Observation(100, int((now - 60) * 1e9)), now)
    assert quiet == pytest.approx(60)
    assert tracker.is_ready(quiet, 100, complete=True)


def test_a_file_being_written_waits_until_it_has_been_unchanged_for_the_quiet_period() -> None:
    tracker = StabilityTracker(quiet_seconds=2)
    now = 1_000_000.0
    for step in range(10):  # grows every 0.5 s
        t = now + step * 0.5
        quiet = tracker.quiet_for("a.jpg", Observation(100 * (step + 1), int(t * 1e9)), t)
        assert not tracker.is_ready(quiet, 100 * (step + 1), complete=True)
    last = Observation(1000, int((now + 4.5) * 1e9))
    assert not tracker.is_ready(tracker.quiet_for("a.jpg", last, now + 6.0), 1000, True)
    assert tracker.is_ready(tracker.quiet_for("a.jpg", last, now + 6.6), 1000, True)


def test_an_old_mtime_set_at_the_end_of_a_copy_restarts_the_clock() -> None:
    tracker = StabilityTracker(quiet_seconds=2)
    now = 1_000_000.0
    tracker.quiet_for("a.jpg", Observation(500, int(now * 1e9)), now)  # being written
    copied = Observation(1000, int((now - 3600) * 1e9))  # `cp -p` sets the source's mtime when done
    assert tracker.quiet_for("a.jpg", copied, now + 0.5) == 0
    assert tracker.is_ready(tracker.quiet_for("a.jpg", copied, now + 2.6), 1000, True)


def test_an_empty_or_incomplete_file_waits() -> None:
    tracker = StabilityTracker(quiet_seconds=2, incomplete_grace=30)
    assert not tracker.is_ready(100, 0, complete=True)
    assert not tracker.is_ready(10, 100, complete=False)
    assert tracker.is_ready(31, 100, complete=False)  # then the server judges it


def test_a_file_dated_in_the_future_counts_from_when_it_was_seen() -> None:
    tracker = StabilityTracker(quiet_seconds=2)
    now = 1_000_000.0
    future = Observation(100, int((now + 3600) * 1e9))
    assert tracker.quiet_for("a.jpg", future, now) == 0
    assert tracker.quiet_for("a.jpg", future, now + 2.5) == pytest.approx(2.5)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_looks_complete_finds_each_formats_end(tmp_path: Path, fmt: str) -> None:
    data = jpeg(320, 240, seed=1) if fmt == "JPEG" else photo_as(fmt, 320, 240, seed=1)
    path = tmp_path / f"p.{fmt.lower()}"
    path.write_bytes(data)
    assert looks_complete(path, len(data))
    path.write_bytes(data[: len(data) * 2 // 3])
    assert not looks_complete(path, len(data) * 2 // 3)


def test_hash_file_is_the_sha256_of_the_content(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    hashed = hash_file(path)
    assert hashed.sha256 == hashlib.sha256(data).hexdigest() and hashed.size == len(data)
    assert read_unchanged(path, hashed) == data


def test_read_unchanged_refuses_a_file_changed_since_it_was_hashed(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"first version")
    hashed = hash_file(path)
    path.write_bytes(b"second version, longer")
    with pytest.raises(FileChanged):
        read_unchanged(path, hashed)
