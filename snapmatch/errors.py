"""Typed domain errors: each carries a machine-readable ``code`` and an HTTP-ish ``status``.

The web layer maps them to the JSON error shape in one place; jobs record ``code`` on the row.
"""

from __future__ import annotations


class SnapmatchError(Exception):
    """Base of every expected, explainable failure."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidUpload(SnapmatchError):
    """A file we will not accept (type, size, pixels, name, truncation)."""

    code = "invalid_upload"
    status = 422


class PermanentImageError(SnapmatchError):
    """The bytes cannot be decoded into an image: retrying will not help."""

    code = "corrupt_image"
    status = 422


class NotFound(SnapmatchError):
    code = "not_found"
    status = 404


class Forbidden(SnapmatchError):
    code = "forbidden"
    status = 403


class Conflict(SnapmatchError):
    code = "conflict"
    status = 409


class QueueFull(SnapmatchError):
    """Back-pressure: the photo queue is over PHOTO_QUEUE_MAX_SIZE; nothing was stored."""

    code = "queue_full"
    status = 503

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(SnapmatchError):
    """A paid provider's budget (time or money) ran out: the photo waits with this status, not a hang."""

    code = "quota_exceeded"
    status = 503


class RetryLater(SnapmatchError):
    """The next provider attempt cannot start for ``delay`` seconds: reschedule the job instead of
    holding a worker. Not a failure: rescheduling must not consume one of the job's retries."""

    code = "retry_later"
    status = 503

    def __init__(self, delay: float, reason: str = "rate", provider: str = "provider") -> None:
        super().__init__(f"{provider}: {reason}, retry in {delay:.2f} s")
        self.delay = delay
        self.reason = reason
