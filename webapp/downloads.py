"""Originals as one zip, streamed as it is written (GET /api/events/<id>/download.zip): an attendee
gets their photos, the owner every processed photo. The archive is never held in memory or on disk:
zipfile writes to a sink that the response drains after every slice of a photo."""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator

from flask import Blueprint, Response
from sqlalchemy import select

from snapmatch import corrections, db, events
from snapmatch.errors import NotFound
from snapmatch.schema import PhotoStatus, photos
from snapmatch.storage import Storage
from webapp.auth import current_user, require_user
from webapp.services import storage

bp = Blueprint("downloads", __name__)
SLICE_BYTES = 1024 * 1024


class _Sink(io.RawIOBase):
    """A write-only, unseekable file: zipfile then writes local headers with data descriptors."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def archive_names(rows: list) -> list[str]:  # type: ignore[type-arg]
    """One name per photo: its uploaded file name, made unique with the photo id when names repeat."""
    seen: set[str] = set()
    names = []
    for row in rows:
        name = posixpath.basename((row.filename or "").replace("\\", "/")) or f"photo-{row.id}.jpg"
        name = re.sub(r"[\x00-\x1f]", "_", name)[:200]
        if name.lower() in seen:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}-{row.id}.{ext}" if dot else f"{name}-{row.id}"
        seen.add(name.lower())
        names.append(name)
    return names


def stream_zip(rows: list, store: Storage) -> Iterator[bytes]:  # type: ignore[type-arg]
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for row, name in zip(rows, archive_names(rows), strict=True):
            data = store.get(row.original_key)
            with archive.open(name, "w", force_zip64=len(data) > 2**31) as member:
                for start in range(0, len(data), SLICE_BYTES):
                    member.write(data[start : start + SLICE_BYTES])
                    yield sink.drain()
            del data
    yield sink.drain()


@bp.get("/api/events/<id:event_id>/download.zip")
@require_user()
def download_zip(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    event = events.viewable_event(user, event_id)
    query = select(photos.c.id, photos.c.filename, photos.c.original_key).where(
        photos.c.event_id == event_id, photos.c.status == PhotoStatus.DONE.value
    )
    if event.owner_id != user.id and not user.is_admin:
        mine = [p["photo_id"] for p in corrections.my_photos(user, event_id)["photos"]]
        query = query.where(photos.c.id.in_(mine))
    with db.connection() as conn:
        rows = conn.execute(query.order_by(photos.c.id)).all()
    if not rows:
        raise NotFound("There are no photos to download yet.", code="no_photos")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", event.name).strip("-")[:60] or f"event-{event_id}"
    return Response(
        stream_zip(rows, storage()),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{slug}-photos.zip"', "Cache-Control": "no-store"},
    )
