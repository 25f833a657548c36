"""The watcher's HTTP client for the Snapmatch API: one keep-alive ``requests.Session`` per thread, one
attempt per call; the retry policy (which failures to retry, how long to wait) is decided here as pure
functions and applied by the caller."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.fields import RequestField
from urllib3.filepost import choose_boundary

USER_AGENT = "snapmatch-watcher/0.1"
CHECK_CHUNK = 500  # hashes per check request: ~34 KB of JSON, under the server's JSON body limit
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


class ApiError(Exception):
    """The server answered with an error we do not retry."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class AuthError(ApiError):
    """401/403/404 on the event: no run can succeed with this token and event; stop and say why."""


class TransientError(Exception):
    """Worth retrying: no connection, a timeout, 5xx, 429 or 503. ``retry_after`` when the server said."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), clamped to [0, 1 hour]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), 3600.0)


def backoff_delay(attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (0 .. base * 2**attempt, capped); never less than Retry-After."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempt, 16)))
    delay = (rng or random).uniform(0, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


def error_of(response: requests.Response) -> tuple[str, str]:
    """(code, message) from the API's one error shape, or from the status line."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code") or "http_error"), str(error.get("message") or response.reason)
    except (ValueError, AttributeError):
        return "http_error", f"HTTP {response.status_code} {response.reason}"


@dataclass
class UploadItem:
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


class MultipartBody:
    """A multipart/form-data body sent as a sequence of chunks, the photos' bytes among them as they are.

    requests' own encoder (urllib3's ``encode_multipart_formdata``) copies every file into one
    buffer, then copies the buffer: 0.27 CPU s per 100 × 3 MB photos, more than hashing them. This
    lays out the same bytes (urllib3's ``RequestField`` renders each part's headers, so names are
    escaped the same way) and lets urllib3 ``sendall`` each chunk; ``len()`` gives requests the
    Content-Length, so the body is not chunk-encoded."""

    def __init__(self, fields: dict[str, str], items: list[UploadItem], boundary: str | None = None) -> None:
        self.boundary = boundary or choose_boundary()
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        delimiter = f"--{self.boundary}\r\n".encode("latin-1")
        parts = [RequestField.from_tuples(name, value) for name, value in fields.items()]
        parts += [RequestField.from_tuples("files", (i.filename, i.data, i.content_type)) for i in items]
        self.chunks: list[bytes] = []
        for part in parts:
            data = part.data if isinstance(part.data, bytes) else str(part.data).encode("utf-8")
            self.chunks += [delimiter, part.render_headers().encode("utf-8"), data, b"\r\n"]
        self.chunks.append(f"--{self.boundary}--\r\n".encode("latin-1"))

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)


@dataclass
class BatchCounts:
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.counts.get("done", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0) + self.counts.get("quota_exceeded", 0)

    @property
    def in_progress(self) -> int:
        return self.counts.get("queued", 0) + self.counts.get("processing", 0)


class Api:
    """Calls to one server with one token. Thread-safe: each thread gets its own keep-alive session."""

    def __init__(self, server: str, token: str | None) -> None:
        self.server = server
        self.token = token
        self._local = threading.local()

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)  # we retry ourselves
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session = session
        return session

    def _call(self, method: str, path: str, *, body_sent: bool = True, **kwargs: Any) -> requests.Response:
        try:
            response = self.session().request(
                method, self.server + path, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs
            )
        except requests.ConnectionError as exc:
            raise TransientError("the server cannot be reached") from exc
        except requests.Timeout as exc:
            raise TransientError("the server did not answer in time") from exc
        if is_retryable_status(response.status_code):
            code, message = error_of(response)
            raise TransientError(
                f"the server answered {response.status_code} ({code})",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                status=response.status_code,
            )
        if response.status_code in (401, 403):
            code, message = error_of(response)
            raise AuthError(response.status_code, code, message)
        return response

    def _expect(self, response: requests.Response, *statuses: int) -> dict[str, Any]:
        if response.status_code not in statuses:
            code, message = error_of(response)
            raise ApiError(response.status_code, code, message)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "invalid_response", "The server's answer is not JSON.") from exc

    def check(self, event_id: int, hashes: list[str]) -> set[str]:
        """The subset of ``hashes`` the event already has."""
        present: set[str] = set()
        for start in range(0, len(hashes), CHECK_CHUNK):
            chunk = hashes[start : start + CHECK_CHUNK]
            response = self._call("POST", f"/api/events/{event_id}/photos/check", json={"sha256": chunk})
            if response.status_code == 404:
                code, message = error_of(response)
                raise AuthError(404, code, message)
            present.update(h.lower() for h in self._expect(response, 200).get("present", []))
        return present

    def upload(self, event_id: int, items: list[UploadItem], batch_id: str) -> requests.Response:
        """One multipart POST of ``items``; the caller interprets the answer (202, 413, other 4xx)."""
        body = MultipartBody({"batch_id": batch_id}, items)
        response = self._call(
            "POST", f"/api/events/{event_id}/photos", data=body, headers={"Content-Type": body.content_type}
        )
        if response.status_code == 404:
            code, message = error_of(response)
            raise AuthError(404, code, message)
        return response

    def batch_counts(self, batch_id: str) -> BatchCounts:
        response = self._call("GET", f"/api/batches/{batch_id}")
        if response.status_code == 404:
            return BatchCounts()  # no upload has created it yet
        return BatchCounts({str(k): int(v) for k, v in self._expect(response, 200).get("counts", {}).items()})

    def create_token(self, email: str, password: str, name: str) -> dict[str, Any]:
        response = self._call("POST", "/api/tokens", json={"email": email, "password": password, "name": name})
        return self._expect(response, 201)

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
