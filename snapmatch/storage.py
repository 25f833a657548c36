"""Object storage behind one interface: local directory (``file://``) or S3 (``s3://bucket/prefix``).

Keys are ours (content-addressed), never client file names; writes are atomic (temp file + rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...
    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """A directory tree; shared between hosts only through a network filesystem (use S3 instead)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            try:
                os.link(path, tmp + ".l")  # same filesystem: no copy
                os.replace(tmp + ".l", tmp)
            except OSError:
                with open(path, "rb") as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


_cache: dict[str, Storage] = {}


def open_storage(url: str) -> Storage:
    """The storage for ``STORAGE_URL``; one instance per URL per process."""
    if url in _cache:
        return _cache[url]
    parsed = urlparse(url)
    storage: Storage
    if parsed.scheme == "file":
        storage = LocalStorage((parsed.netloc + parsed.path) or ".")
    elif parsed.scheme == "s3":
        from snapmatch.s3storage import S3Storage

        storage = S3Storage(bucket=parsed.netloc, prefix=parsed.path.lstrip("/"))
    else:
        raise ValueError(f"STORAGE_URL must start with file:// or s3://, got {url!r}")
    _cache[url] = storage
    return storage
