"""How much of a request body each route may read, checked from Content-Length before a byte is
read; a chunked body (no Content-Length) is cut off with the same 413 once it passes the limit.

Every route gets the JSON limit (``JSON_MAX_BYTES``, 64 KiB) and a handful of form parts unless its
view says otherwise with ``@body_limit``: photo uploads take 20 × the per-file limit, a selfie one
file. Without this, ``MAX_CONTENT_LENGTH`` (sized for uploads) let any route buffer ~1 GB.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from snapmatch.settings import Settings
from webapp.services import settings

F = TypeVar("F", bound=Callable[..., object])

# Fields of a form that is not an upload (/login: email, password, csrf_token, next; a little room).
FORM_PARTS = 16
# Multipart framing around one file (boundaries and part headers), on top of the file's own bytes.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class BodyLimit:
    max_bytes: Callable[[Settings], int]
    max_parts: int


DEFAULT_LIMIT = BodyLimit(max_bytes=lambda s: s.JSON_MAX_BYTES, max_parts=FORM_PARTS)


def body_limit(max_bytes: Callable[[Settings], int], max_parts: int) -> Callable[[F], F]:
    """Mark a view that reads more than a JSON body: ``max_bytes(settings)`` bytes in all, and at
    most ``max_parts`` multipart parts (files and fields)."""

    def mark(view: F) -> F:
        view.body_limit = BodyLimit(max_bytes, max_parts)  # type: ignore[attr-defined]
        return view

    return mark


def upload_limit(files: int, max_parts: int | None = None) -> Callable[[F], F]:
    """Up to ``files`` × MAX_UPLOAD_MB of image files (plus framing) in at most ``max_parts`` parts
    (default: ``files`` files and a few form fields)."""
    return body_limit(
        lambda s: files * s.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        max_parts=max_parts if max_parts is not None else files + FORM_PARTS,
    )


def limit_for(endpoint: str | None) -> BodyLimit:
    view = current_app.view_functions.get(endpoint or "")
    return getattr(view, "body_limit", DEFAULT_LIMIT)


class CutOffStream(io.RawIOBase):
    """A body of unknown length (chunked): readable up to ``limit`` bytes, a 413 past it.

    werkzeug's own guard for such bodies stops silently at the limit, so a too-long JSON body
    would be parsed truncated (a confusing 400) instead of refused."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        # One byte past the limit is enough to know the body is too long.
        want = min(len(buffer), self._limit + 1 - self._read)
        data = self._stream.read(want) if want > 0 else b""
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge(
                f"This request's body is over {self._limit} bytes, the most this route accepts."
            )
        buffer[: len(data)] = data
        return len(data)


def bound_request_body() -> None:
    """before_request, registered before anything that may read the body (CSRF reads the form)."""
    limit = limit_for(request.endpoint)
    max_bytes = limit.max_bytes(settings())
    request.max_content_length = max_bytes
    request.max_form_parts = limit.max_parts
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestEntityTooLarge(f"This request's body is {length} bytes; this route accepts at most {max_bytes}.")
    if length is None and request.environ.get("wsgi.input_terminated"):
        request.stream = CutOffStream(request.environ["wsgi.input"], max_bytes)  # type: ignore[misc]


def init_app(app: Flask) -> None:
    app.before_request(bound_request_body)
