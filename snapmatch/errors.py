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


class ProviderRejected(SnapmatchError):
    """A provider refused the request itself (a 4xx other than throttling: invalid parameter, access
    denied...): the same request will be refused again, so the photo or selfie fails at once."""

    code = "provider_rejected"
    status = 502


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


# What a photographer or attendee reads for each error code stored on a photo or selfie row, or
# answered for one file of an upload. The details (exception text, paths, hosts) go to the logs only.
USER_MESSAGES: dict[str, str] = {
    "processing_error": "Processing failed on every attempt. Upload the file again; if it fails again, "
    "tell the organiser.",
    "abandoned": "Processing was interrupted too many times (worker crashes). Upload the file again.",
    "storage_error": "The file could not be stored just now. Upload it again in a moment.",
    "database_error": "The file could not be recorded just now. Upload it again in a moment.",
    "corrupt_image": "The image data is damaged and cannot be read. Export or copy the photo again.",
    "unsupported_type": "The stored file is not a JPEG, PNG or WebP image.",
    "encode_failed": "The image could not be converted for face recognition. Export it again as a JPEG.",
    "too_large": "The image cannot be made small enough for face recognition.",
    "truncated_image": "The file is incomplete (its end is missing). Upload it again.",
    "image_too_large": "The image has more pixels than Snapmatch accepts (MAX_IMAGE_PIXELS).",
    "file_too_large": "The file is larger than Snapmatch accepts (MAX_UPLOAD_MB).",
    "empty_file": "The file is empty.",
    "provider_image": "The face recognition service refused this image. Export it again as an ordinary JPEG.",
    "provider_error": "The face recognition service kept failing. Upload the file again later.",
    "provider_rejected": "The face recognition service refused this request. Tell the organiser.",
    "quota_exceeded": "The face recognition service stayed busy past this file's time budget; it waits to be "
    "tried again.",
    "budget_exceeded": "The event's face recognition budget is used up; the photo waits until the organiser raises it.",
    "no_face": "No face was found in the selfie: take one facing the camera, in good light.",
}
GENERIC_MESSAGE = "Processing failed. Upload the file again; if it fails again, tell the organiser."


def user_message(code: str) -> str:
    """The sentence shown for ``code`` (a generic one for codes without their own)."""
    return USER_MESSAGES.get(code, GENERIC_MESSAGE)


def user_error(code: str) -> dict[str, str]:
    """The ``{"code", "message"}`` pair for a per-file or per-row error."""
    return {"code": code, "message": user_message(code)}
