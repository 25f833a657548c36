"""How the web app reads upload bodies: each multipart file part is written once, straight from the
socket into an ``UploadSpool`` (hashed and header-checked as it arrives), in large reads.

werkzeug's defaults would spool each part to its own temp file (which ``ingest`` then copied again
while hashing) and read the body 64 KiB at a time. Under gunicorn each read copies what the server
has read ahead (up to 1 MiB) twice, so a 3 MB part cost ~100 MB of memcpy: about a third of an
upload's acknowledgement time (profiled with py-spy; BENCHMARKS.md §3). Large bodies are therefore
read from the server 1 MiB at a time through a C buffered reader, and parsed 256 KiB at a time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from flask import Request
from werkzeug.formparser import FormDataParser, MultiPartParser

from snapmatch.ingest import UploadSpool
from webapp.services import settings, upload_tmp_dir

log = logging.getLogger(__name__)

# Spooled uploads older than this are leftovers of a killed web process.
STALE_SPOOL_SECONDS = 3600

# werkzeug refuses a read that, with what its decoder still buffers, exceeds MAX_FORM_MEMORY_SIZE
# (1 MiB here): reads are at most a quarter of it.
READ_SIZE = 256 << 10
# Bodies at least this large are read from the server in BODY_READ_SIZE reads.
BODY_READ_SIZE = 1 << 20


class _LargeReadFormDataParser(FormDataParser):
    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=min(READ_SIZE, max(4096, (self.max_form_memory_size or READ_SIZE * 4) // 4)),
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class UploadRequest(Request):
    form_data_parser_class = _LargeReadFormDataParser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        spool = UploadSpool(upload_tmp_dir(), settings().max_upload_bytes)
        self.__dict__.setdefault("_upload_spools", []).append(spool)
        return spool  # type: ignore[return-value]

    def close(self) -> None:
        """End of request: no spooled part outlives it, whatever the view did with it."""
        try:
            super().close()
        finally:
            for spool in self.__dict__.pop("_upload_spools", []):
                spool.discard()


class _RawBody(io.RawIOBase):
    """The server's body stream as a raw stream, so ``io.BufferedReader`` can sit on it."""

    def __init__(self, body: IO[bytes]) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class LargeBodyReads:
    """WSGI middleware: a request body of known, large length is read through a 1 MiB buffer."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length >= BODY_READ_SIZE and not environ.get("wsgi.input_terminated"):
            environ["wsgi.input"] = io.BufferedReader(_RawBody(environ["wsgi.input"]), BODY_READ_SIZE)
        return self.app(environ, start_response)


def remove_stale_spools(tmp_dir: str, older_than: float = STALE_SPOOL_SECONDS) -> int:
    """Delete spooled uploads a killed web process left behind (a request removes its own)."""
    cutoff = time.time() - older_than
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(tmp_dir):
            with contextlib.suppress(OSError):
                if entry.name.startswith("upload-") and entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        log.info("removed %d stale upload spool files from %s", removed, tmp_dir)
    return removed
