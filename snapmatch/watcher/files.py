"""Which files in a folder are photos to send, when a file is complete (stable), and its sha256.

The stability rule is a pure decision over (size, mtime) observations so it can be tested without a disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp"})
TAIL_BYTES = 4096  # the server looks for the end marker in the same trailer
HASH_CHUNK = 1024 * 1024


def is_candidate(root: Path, path: Path) -> bool:
    """A photo we should send: an image suffix, not hidden, not a temporary or backup file.

    Hidden means any component below ``root`` starting with "." (dotfiles, macOS ``._`` resource forks,
    ``.Trashes``, rsync's temporary ``.name.XXXXXX``) or "~" (Office/editor lock files)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    if not rel.parts or any(part.startswith((".", "~")) for part in rel.parts):
        return False
    name = rel.name
    if name.endswith("~"):
        return False
    # Only the last suffix counts: "IMG_1.jpg.part" or "IMG_1.jpg.tmp" is a copy still being written.
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def is_hidden_by_attribute(st: os.stat_result) -> bool:
    """Windows' hidden/system/temporary attributes (always false elsewhere)."""
    attributes = getattr(st, "st_file_attributes", 0)
    mask = (
        getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0)
        | getattr(stat, "FILE_ATTRIBUTE_SYSTEM", 0)
        | getattr(stat, "FILE_ATTRIBUTE_TEMPORARY", 0)
    )
    return bool(attributes & mask)


def scan(root: Path) -> Iterator[Path]:
    """Every candidate file under ``root`` (recursive; hidden directories are not entered)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "~"))]
        base = Path(dirpath)
        for name in filenames:
            path = base / name
            if is_candidate(root, path):
                yield path


@dataclass(frozen=True)
class Observation:
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Observation:
        return cls(st.st_size, st.st_mtime_ns)


@dataclass
class _Track:
    observation: Observation
    quiet_since: float  # wall-clock time of the last change we know of


class StabilityTracker:
    """Decides when a file has stopped changing: its size and mtime unchanged for ``quiet_seconds``.

    The last change is the file's mtime when we first see it (a card copied an hour ago is ready at
    once) and the moment we saw (size, mtime) differ afterwards (a copy in progress restarts the
    clock on every write; a tool that sets an old mtime at the end restarts it too). A file whose
    end marker is missing waits ``incomplete_grace`` more before it is sent anyway (the server judges it).
    """

    def __init__(self, quiet_seconds: float = 2.0, incomplete_grace: float = 30.0) -> None:
        self.quiet_seconds = quiet_seconds
        self.incomplete_grace = incomplete_grace
        self._tracks: dict[str, _Track] = {}

    def quiet_for(self, key: str, observation: Observation, now: float) -> float:
        """Record an observation; seconds the file has been unchanged."""
        track = self._tracks.get(key)
        if track is None:
            mtime = observation.mtime_ns / 1e9
            track = _Track(observation, mtime if mtime <= now else now)
            self._tracks[key] = track
        elif track.observation != observation:
            track.observation = observation
            track.quiet_since = now
        return now - track.quiet_since

    def is_ready(self, quiet: float, size: int, complete: bool) -> bool:
        if size <= 0 or quiet < self.quiet_seconds:
            return False
        return complete or quiet >= self.incomplete_grace

    def forget(self, key: str) -> None:
        self._tracks.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._tracks


def looks_complete(path: Path, size: int) -> bool:
    """The format's end is there: JPEG End-Of-Image, PNG IEND, WebP's declared RIFF size."""
    with open(path, "rb") as f:
        head = f.read(12)
        if size > TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
        else:
            f.seek(0)
        tail = f.read(TAIL_BYTES)
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" in tail
    if head.startswith(b"\x89PNG"):
        return b"IEND" in tail
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return size >= 8 + int.from_bytes(head[4:8], "little")
    return True  # not an image we know under an image name: send it, the server says why it refuses it


@dataclass(frozen=True)
class HashedFile:
    sha256: str
    size: int
    mtime_ns: int


class FileChanged(Exception):
    """The file changed while it was read: it goes back to waiting for stability."""


def hash_file(path: Path) -> HashedFile:
    """sha256 computed while reading, 1 MiB at a time; the file must not change during the read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        before = Observation.of(os.fstat(f.fileno()))
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
        after = Observation.of(os.fstat(f.fileno()))
    if before != after:
        raise FileChanged(str(path))
    return HashedFile(digest.hexdigest(), after.size, after.mtime_ns)


def read_unchanged(path: Path, expected: HashedFile) -> bytes:
    """The file's bytes for upload, if its (size, mtime) still match what was hashed; else FileChanged."""
    with open(path, "rb") as f:
        before = Observation.of(os.fstat(f.fileno()))
        data = f.read()
        after = Observation.of(os.fstat(f.fileno()))
    if before != after or after != Observation(expected.size, expected.mtime_ns) or len(data) != expected.size:
        raise FileChanged(str(path))
    return data
