"""Accepting uploads: stream each file to a temp file while hashing it, check it from headers only,
store it content-addressed, and record a ``queued`` photo row. Nothing is decoded here.

The caller enqueues the job after the row is committed; the sweeper covers a failed enqueue.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from snapmatch import db
from snapmatch.errors import Conflict, InvalidUpload, SnapmatchError, user_error
from snapmatch.imaging import ImageHeader, ImageType, inspect_upload
from snapmatch.schema import PhotoStatus, batches, photos
from snapmatch.settings import Settings
from snapmatch.storage import Storage

log = logging.getLogger(__name__)
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 4096
_EXTENSIONS = {ImageType.JPEG: "jpg", ImageType.PNG: "png", ImageType.WEBP: "webp"}
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class FileResult:
    filename: str
    status: str  # "queued" | "duplicate" | "rejected"
    photo_id: int | None = None
    job_id: str | None = None
    error: dict[str, str] | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "filename": self.filename,
            "photo_id": self.photo_id,
            "job_id": self.job_id,
            "status": self.status,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class SpooledFile:
    """An upload copied to our own temp file, with what validation needs."""

    path: str
    size: int
    sha256: str
    head: bytes
    tail: bytes
    too_large: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class UploadSpool(io.RawIOBase):
    """A temp file in ``tmp_dir`` that hashes the bytes and keeps the header and trailer as they are
    written; past ``max_bytes`` it keeps nothing more but goes on counting (``file_too_large``).

    It is also the web app's stream factory for multipart file parts, so an upload is written
    once, straight from the request body, instead of to werkzeug's temp file and then copied.
    ``close`` closes the file; the file itself goes with ``discard`` (or the ``SpooledFile``'s).
    """

    def __init__(self, tmp_dir: str, max_bytes: int) -> None:
        super().__init__()
        os.makedirs(tmp_dir, exist_ok=True)
        fd, self.path = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb+")
        self._max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self._tail = b""
        self.size = 0
        self.too_large = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        n = len(data)
        self.size += n
        if self.size > self._max_bytes:
            self.too_large = True
            return n
        self._digest.update(data)
        self._file.write(data)
        if len(self._head) < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - len(self._head)]
        self._tail = (self._tail + bytes(data[-TAIL_BYTES:]))[-TAIL_BYTES:]
        return n

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def finish(self) -> SpooledFile:
        """The spooled upload, complete and on disk."""
        self.flush()
        return SpooledFile(
            path=self.path,
            size=self.size,
            sha256=self._digest.hexdigest(),
            head=bytes(self._head),
            tail=self._tail,
            too_large=self.too_large,
        )


def spool(stream: BinaryIO, tmp_dir: str, max_bytes: int) -> SpooledFile:
    """The upload in ``stream`` on disk, hashed; an ``UploadSpool`` (the web app's uploads) already is."""
    if isinstance(stream, UploadSpool):
        return stream.finish()
    out = UploadSpool(tmp_dir, max_bytes)
    try:
        while chunk := stream.read(1 << 20):
            out.write(chunk)
        return out.finish()
    except BaseException:
        out.discard()
        raise
    finally:
        out.close()


def check_spooled(spooled: SpooledFile, settings: Settings) -> ImageHeader:
    """Header-only checks of a spooled upload against the configured limits."""
    with open(spooled.path, "rb") as source:
        return inspect_upload(
            spooled.head,
            spooled.tail,
            spooled.size,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            source=source,
        )


def check_filename(name: str | None) -> str:
    """The client's name for display only; names that try to be paths are refused outright."""
    name = (name or "").strip()
    if not name:
        return "unnamed"
    if "/" in name or "\\" in name or "\x00" in name or name in (".", "..") or any(ord(c) < 32 for c in name):
        raise InvalidUpload(
            f"The file name {name!r} contains a path or control characters: send the bare file name.",
            code="invalid_filename",
        )
    return name[:255]


def original_key(event_id: int, sha256: str, kind: ImageType) -> str:
    return f"events/{event_id}/originals/{sha256[:2]}/{sha256}.{_EXTENSIONS[kind]}"


def ensure_batch(event_id: int, owner_id: int, batch_id: str | None) -> str:
    """The batch to file uploads under: the client's id (idempotent) or a new one."""
    if batch_id:
        if not BATCH_ID.fullmatch(batch_id):
            raise SnapmatchError("batch_id must be 1-64 letters, digits, '-' or '_'.", code="invalid_batch_id")
    else:
        batch_id = uuid.uuid4().hex
    with db.transaction() as conn:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(batches).values(
                            id=batch_id, event_id=event_id, owner_id=owner_id, created_at=db.utcnow()
                        )
                    )
                return batch_id
            except IntegrityError:
                row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is not None and (row.event_id != event_id or row.owner_id != owner_id):
            raise Conflict("That batch_id belongs to another event.", code="batch_conflict")
    return batch_id


def existing_photo(event_id: int, sha256: str) -> int | None:
    with db.connection() as conn:
        return conn.execute(
            select(photos.c.id).where(photos.c.event_id == event_id, photos.c.sha256 == sha256)
        ).scalar()


def _photo_with_bytes(event_id: int, sha256: str) -> int | None | bool:
    """The photo holding these bytes, None if there is none, False if the database cannot say
    (then the stored original is kept: an orphan file is better than a row without its file)."""
    try:
        return existing_photo(event_id, sha256)
    except SQLAlchemyError:
        log.warning("event %s: cannot tell whether a photo holds %s; its stored original is kept", event_id, sha256)
        return False


def _delete_quietly(storage: Storage, key: str) -> None:
    try:
        storage.delete(key)
    except Exception:  # noqa: BLE001 - the upload's answer is already decided; the log keeps the orphan's key
        log.exception("could not delete %s, which no row references", key)


def _record_photo(event_id: int, batch_id: str, spooled: SpooledFile, header: ImageHeader, name: str, key: str) -> int:
    now = db.utcnow()
    with db.transaction() as conn:
        return conn.execute(
            insert(photos).values(
                event_id=event_id,
                batch_id=batch_id,
                sha256=spooled.sha256,
                filename=name,
                content_type=header.type.value,
                size_bytes=spooled.size,
                width=header.width,
                height=header.height,
                original_key=key,
                status=PhotoStatus.QUEUED.value,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]


def ingest_file(
    *,
    event_id: int,
    batch_id: str,
    stream: BinaryIO,
    filename: str | None,
    storage: Storage,
    settings: Settings,
    tmp_dir: str,
) -> FileResult:
    """Validate, dedupe, store and record one uploaded file. Never raises for a bad file, nor for a
    storage or database error on this file alone: it is rejected with a code, nothing left stored."""
    display_name = (filename or "unnamed")[:255]
    spooled = None
    try:
        display_name = check_filename(filename)
        spooled = spool(stream, tmp_dir, settings.max_upload_bytes)
        header = check_spooled(spooled, settings)
        duplicate_of = existing_photo(event_id, spooled.sha256)
        if duplicate_of is not None:
            return FileResult(display_name, "duplicate", photo_id=duplicate_of, sha256=spooled.sha256)
        key = original_key(event_id, spooled.sha256, header.type)
        try:
            storage.put_file(key, spooled.path, header.type.value)
        except Exception:  # noqa: BLE001 - OSError, botocore's errors...: this file fails, the others go on
            log.exception("upload %r to event %s: storing %s failed", display_name, event_id, key)
            return FileResult(display_name, "rejected", error=user_error("storage_error"), sha256=spooled.sha256)
        try:
            photo_id = _record_photo(event_id, batch_id, spooled, header, display_name, key)
        except SQLAlchemyError as exc:
            winner = _photo_with_bytes(event_id, spooled.sha256)
            if isinstance(exc, IntegrityError) and isinstance(winner, int):
                # The same bytes arrived concurrently in another request: that one won (and owns the key).
                return FileResult(display_name, "duplicate", photo_id=winner, sha256=spooled.sha256)
            log.exception("upload %r to event %s: recording the photo failed", display_name, event_id)
            if winner is None:  # no row points at the stored original: remove it
                _delete_quietly(storage, key)
            return FileResult(display_name, "rejected", error=user_error("database_error"), sha256=spooled.sha256)
        return FileResult(display_name, PhotoStatus.QUEUED.value, photo_id=photo_id, sha256=spooled.sha256)
    except InvalidUpload as exc:
        return FileResult(display_name, "rejected", error={"code": exc.code, "message": exc.message})
    finally:
        if spooled is not None:
            spooled.discard()
