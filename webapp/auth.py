"""Who is calling: a Bearer API token or the session cookie, and role checks for views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import g, request, session

from snapmatch import accounts
from snapmatch.accounts import User
from snapmatch.errors import Forbidden, SnapmatchError
from snapmatch.schema import Role

F = TypeVar("F", bound=Callable[..., object])


class Unauthorized(SnapmatchError):
    code = "unauthorized"
    status = 401


def current_user() -> User | None:
    if "user" in g:
        return g.user
    user = None
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        user = accounts.user_for_token(header[7:].strip())
        if user is None:
            raise Unauthorized("That API token is not valid: create one with `flask --app webapp tokens create`.")
    elif session.get("user_id"):
        user = accounts.get_user(int(session["user_id"]))
    g.user = user
    return user


def require_user(*roles: Role) -> Callable[[F], F]:
    """The view needs a signed-in user; with roles, one of them (admins pass every role check)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            user = current_user()
            if user is None:
                raise Unauthorized("Sign in, or send `Authorization: Bearer <token>`.")
            if roles and user.role not in roles and not user.is_admin:
                names = " or ".join(r.value for r in roles)
                raise Forbidden(f"This needs the {names} role.", code="role_required")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate
