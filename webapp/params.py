"""Every value a client sends, parsed and bounded in one place: query arguments and JSON fields.

A bad value is a 400 ``invalid_parameter`` (or ``missing_parameter``) naming the parameter, never a
500 from ``int()`` or from the database (``?event_id=²`` passes ``str.isdigit``; 20-digit numbers
overflow a BIGINT).
"""

from __future__ import annotations

from flask import request

from snapmatch.errors import SnapmatchError

# Database ids are positive BIGINTs.
MAX_ID = 2**63 - 1
_NO_DEFAULT = object()


class InvalidParameter(SnapmatchError):
    code = "invalid_parameter"
    status = 400


class MissingParameter(SnapmatchError):
    code = "missing_parameter"
    status = 400


def parse_int(name: str, raw: object, minimum: int, maximum: int) -> int:
    """``raw`` as an int in [minimum, maximum]: ASCII digits with an optional sign (at most 20
    characters), or a JSON integer; booleans and floats are refused."""
    if isinstance(raw, bool):
        raise InvalidParameter(f"{name} must be a whole number.")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits or len(text) > 20 or not (digits.isascii() and digits.isdigit()):
            raise InvalidParameter(f"{name} must be a whole number.")
        value = int(text)
    else:
        raise InvalidParameter(f"{name} must be a whole number.")
    if not minimum <= value <= maximum:
        raise InvalidParameter(f"{name} must be between {minimum} and {maximum}.")
    return value


def int_arg(name: str, default: int | None | object = _NO_DEFAULT, *, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """The query argument ``name`` as a bounded int; absent or empty gives ``default`` (required
    when no default is given)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is _NO_DEFAULT:
            raise MissingParameter(f"Pass ?{name}=<number>.")
        return default  # type: ignore[return-value]
    return parse_int(name, raw, minimum, maximum)


def id_arg(name: str) -> int:
    """A required database id in the query string (1 .. 2**63-1)."""
    return int_arg(name, minimum=1, maximum=MAX_ID)


def int_field(body: dict, name: str, *, minimum: int = 0, maximum: int = MAX_ID, required: bool = True) -> int | None:
    """The JSON field ``name`` as a bounded int (a JSON number, or a string of digits)."""
    raw = body.get(name)
    if raw is None:
        if required:
            raise MissingParameter(f"Send {name!r} in the JSON body.")
        return None
    return parse_int(name, raw, minimum, maximum)


def str_field(body: dict, name: str, *, max_length: int, required: bool = True) -> str | None:
    """The JSON field ``name`` as a string of at most ``max_length`` characters."""
    raw = body.get(name)
    if raw is None or raw == "":
        if required:
            raise MissingParameter(f"Send {name!r} in the JSON body.")
        return None
    if not isinstance(raw, str):
        raise InvalidParameter(f"{name} must be a string.")
    if len(raw) > max_length:
        raise InvalidParameter(f"{name} has at most {max_length} characters.")
    return raw
