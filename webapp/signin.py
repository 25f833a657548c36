"""Sign-in pages: GET/POST /login (a session cookie via Flask-Login), POST /logout, and /me.

The form is plain HTML posting ``email``, ``password``, ``csrf_token`` (checked app-wide by
webapp/csrf.py) and an optional same-origin ``next`` path. Attempts are rate limited per address
and per email (webapp/ratelimits.py).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from snapmatch import accounts
from snapmatch.accounts import User
from snapmatch.schema import Role
from webapp.auth import current_user, require_user, sign_in, sign_out
from webapp.csrf import CSRF_MESSAGE, LOGIN_REASON
from webapp.ratelimits import sign_in_limits
from webapp.services import settings

bp = Blueprint("signin", __name__)

SIGN_IN_FAILED = "That email and password do not match an account. Check both and try again."


class LoginForm(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect already checked every POST, this form's included

    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site (``/events?x=1``), else None: never another host,
    scheme, or a protocol-relative ``//host``."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ch < " " or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def home_path(user: User) -> str:
    """Where a user lands after signing in."""
    if user.role is Role.ADMIN:
        return "/admin"
    if user.role is Role.PHOTOGRAPHER:
        return "/events"
    event_id = accounts.last_joined_event_id(user)
    return f"/e/{event_id}" if event_id else "/me"


def _page(form: LoginForm, error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    return (
        render_template(
            "login.html", error=error, email=form.email.data or "", next_path=safe_next(form.next.data) or ""
        ),
        status,
    )


@bp.get("/login")
def login_page():  # type: ignore[no-untyped-def]
    form = LoginForm(formdata=None, next=request.args.get("next", ""))
    return _page(form, CSRF_MESSAGE if request.args.get("reason") == LOGIN_REASON else None)


@bp.post("/login")
@sign_in_limits
def login():  # type: ignore[no-untyped-def]
    form = LoginForm()
    if not form.validate():
        return _page(form, "Enter your email and your password.", 400)
    user = accounts.authenticate(form.email.data, form.password.data)
    if user is None:
        return _page(form, SIGN_IN_FAILED, 401)
    sign_in(user, timedelta(hours=settings().SESSION_LIFETIME_HOURS))
    return redirect(safe_next(form.next.data) or home_path(user), code=303)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    sign_out()
    return redirect("/login", code=303)


@bp.get("/me")
@require_user()
def me_page():  # type: ignore[no-untyped-def]
    user = current_user()
    return render_template("me.html", user=user, home=home_path(user))
