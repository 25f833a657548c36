"""Who is calling: a Bearer API token or the Flask-Login session cookie, and role checks for views.

Every route accepts either. A Bearer header wins (and a bad one is a 401, never a fall-back to the
cookie). Unauthenticated page requests are sent to /login?next=…; API requests get a 401 JSON error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import TypeVar

import flask_login
from flask import Flask, g, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin

from snapmatch import accounts
from snapmatch.accounts import User
from snapmatch.errors import Forbidden, SnapmatchError
from snapmatch.schema import Role
from webapp.errors import wants_html

F = TypeVar("F", bound=Callable[..., object])

login_manager = LoginManager()
# The session is bound to the browser (address + user agent) it was made in; a copied cookie used
# elsewhere is dropped.
login_manager.session_protection = "strong"


class Unauthorized(SnapmatchError):
    code = "unauthorized"
    status = 401


class SessionUser(UserMixin):
    """Flask-Login's view of a signed-in browser: the user and the secret of its server-side
    session row. The cookie stores ``"<user id>:<session secret>"``."""

    def __init__(self, user: User, session_secret: str) -> None:
        self.user = user
        self.session_secret = session_secret

    def get_id(self) -> str:
        return f"{self.user.id}:{self.session_secret}"


@login_manager.user_loader
def _load_session_user(session_id: str) -> SessionUser | None:
    user_id, _, secret = session_id.partition(":")
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 18 and 0 < len(secret) <= 100):
        return None
    user = accounts.user_for_session(int(user_id), secret)
    return SessionUser(user, secret) if user else None


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def current_user() -> User | None:
    if "user" in g:
        return g.user
    user = None
    token = bearer_token()
    if token is not None:
        user = accounts.user_for_token(token)
        if user is None:
            raise Unauthorized("That API token is not valid: create one with `flask --app webapp tokens create`.")
    else:
        signed_in = flask_login.current_user
        if signed_in.is_authenticated:
            user = signed_in.user
    g.user = user
    return user


def sign_in(user: User, lifetime: timedelta) -> None:
    """Start a fresh session for ``user``: a new server-side session row, and a cookie that carries
    only the sign-in (whatever the old session held, a planted value or id, is gone)."""
    session.clear()
    session.permanent = True
    secret = accounts.start_session(user, lifetime)
    flask_login.login_user(SessionUser(user, secret))
    g.user = user


def sign_out() -> None:
    """End the session here and on the server: the same cookie replayed later is refused."""
    signed_in = flask_login.current_user
    if signed_in.is_authenticated:
        accounts.end_session(signed_in.session_secret)
    flask_login.logout_user()
    session.clear()
    g.pop("user", None)


def login_redirect():  # type: ignore[no-untyped-def]
    return redirect(url_for("signin.login_page", next=request.full_path if request.query_string else request.path))


def require_user(*roles: Role) -> Callable[[F], F]:
    """The view needs a signed-in user; with roles, one of them (admins pass every role check)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            user = current_user()
            if user is None:
                if wants_html():
                    return login_redirect()
                raise Unauthorized("Sign in, or send `Authorization: Bearer <token>`.")
            if roles and user.role not in roles and not user.is_admin:
                names = " or ".join(r.value for r in roles)
                raise Forbidden(f"This needs the {names} role.", code="role_required")
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
