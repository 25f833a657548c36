"""The one JSON error shape, ``{"error": {"code", "message"}}``, and the handlers that produce it."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import IntegerConverter

from snapmatch.errors import QueueFull, SnapmatchError
from webapp.params import MAX_ID

log = logging.getLogger(__name__)


def api_error(status: int, code: str, message: str | None = None, retry_after: int | None = None, **extra: object):  # type: ignore[no-untyped-def]
    body: dict[str, object] = {"error": {"code": code, "message": message or HTTP_STATUS_CODES.get(status, "Error")}}
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def wants_html() -> bool:
    """A browser asking for a page (not under /api/, HTML preferred): answer with a page or a
    redirect rather than JSON."""
    if request.path.startswith("/api/"):
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def json_body() -> dict:
    """The request's JSON object, parsed only as JSON (a form or multipart body is a 415, never
    parsed); an empty body is ``{}``; anything else is a 400 that says what was expected. The
    body's size was bounded before the view ran (webapp/bodylimits.py)."""
    if not request.is_json:
        if not _has_body():
            return {}
        raise SnapmatchError(
            "Send a JSON object with Content-Type: application/json.", code="unsupported_media_type", status=415
        )
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # json's decoder gives up on deep nesting with this, not a ValueError
        raise SnapmatchError("The JSON body is nested too deeply.", code="invalid_json") from None
    if body is None and not request.get_data(cache=True):
        return {}
    if not isinstance(body, dict):
        raise SnapmatchError("Send a JSON object (Content-Type: application/json).", code="invalid_json")
    if not _storable_text(body):
        raise SnapmatchError(
            "Text in the body may not contain NUL characters or unpaired surrogates.", code="invalid_json"
        )
    return body


def _storable_text(value: object) -> bool:
    """True when every string in a parsed JSON value is text a database can store: JSON's escapes
    can spell NUL and lone surrogates, which PostgreSQL refuses (a 500 instead of a 400)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def decimal_range_regex(limit: int) -> str:
    """A regex matching exactly the ASCII decimals 1..limit written without leading zeros."""
    digits = str(limit)
    parts = [rf"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            parts.append(f"{digits[:i]}[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


class IdConverter(IntegerConverter):
    """Database ids in URLs: 1 .. 2**63-1, so an absurd number is a 404, never a database error.

    The bound is in the regex, not only in ``to_python``: werkzeug answers a value its converter
    rejects late with 405 (naming another rule's methods) instead of 404."""

    regex = decimal_range_regex(MAX_ID)

    def __init__(self, map, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(map, min=1, max=MAX_ID)


def _snake(text: str) -> str:
    return "_".join(text.lower().replace("-", " ").split())


def error_answer(status: int, code: str, message: str, retry_after: int | None = None):  # type: ignore[no-untyped-def]
    """The JSON error for API clients; for a browser asking for a page, the same sentence as a page."""
    if wants_html():
        from flask import render_template

        title = {404: "Not found", 403: "Not allowed", 401: "Please sign in"}.get(status, "Something is wrong")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return render_template("error.html", title=title, message=message), status, headers
    return api_error(status, code, message, retry_after=retry_after)


def init_app(app: Flask) -> None:
    @app.errorhandler(SnapmatchError)
    def _domain_error(exc: SnapmatchError):  # type: ignore[no-untyped-def]
        retry_after = exc.retry_after if isinstance(exc, QueueFull) else None
        return error_answer(exc.status, exc.code, exc.message, retry_after=retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        code = _snake(HTTP_STATUS_CODES.get(status, "error"))
        if status == 413:
            code = "request_too_large"
        if wants_html():
            return error_answer(status, code, exc.description or HTTP_STATUS_CODES.get(status, "Error"))
        response = api_error(status, code, exc.description)
        # The exception's own headers say how to do better (405's Allow, which HTTP requires).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        return error_answer(500, "internal_error", "Something went wrong on our side; it has been logged.")
