"""The one JSON error shape, ``{"error": {"code", "message"}}``, and the handlers that produce it."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from snapmatch.errors import QueueFull, SnapmatchError

log = logging.getLogger(__name__)


def api_error(status: int, code: str, message: str | None = None, retry_after: int | None = None, **extra: object):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"error": {"code": code, "message": message or HTTP_STATUS_CODES.get(status, "Error")}}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _snake(text: str) -> str:
    return "_".join(text.lower().replace("-", " ").split())


def init_app(app: Flask) -> None:
    @app.errorhandler(SnapmatchError)
    def _domain_error(exc: SnapmatchError):  # type: ignore[no-untyped-def]
        retry_after = exc.retry_after if isinstance(exc, QueueFull) else None
        return api_error(exc.status, exc.code, exc.message, retry_after=retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        code = _snake(HTTP_STATUS_CODES.get(status, "error"))
        if status == 413:
            code = "request_too_large"
        return api_error(status, code, exc.description)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        return api_error(500, "internal_error", "Something went wrong on our side; it has been logged.")
