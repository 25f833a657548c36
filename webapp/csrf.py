"""CSRF protection with Flask-WTF's ``CSRFProtect``, app-wide: every unsafe request (POST, PUT,
PATCH, DELETE) that a browser's cookie could authenticate must carry the token, as the
``X-CSRFToken`` header or the ``csrf_token`` form field (pages read it from
``<meta name="csrf-token">``). Blueprints mounted later (rq-dashboard at /admin/rq) are covered too.

Not checked: requests with ``Authorization: Bearer`` (a cross-site page cannot add that header and
the cookie plays no part), API requests that carry no session cookie at all (nothing for a forger
to ride on; they get the usual 401), and views marked ``@csrf.exempt`` that never read the cookie
(POST /api/tokens). Pages outside /api/ are checked even without a cookie, so /login cannot be
forged either ("login CSRF").

A refused request changes nothing, the browser's cookie included: its response sets no session
cookie. A cross-site form post arrives without the SameSite=Lax cookie, so its session here is a new,
empty one; had the refusal saved it (the error page's token, a flashed message), the browser would
have stored that empty session over the victim's own and signed them out.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_wtf.csrf import CSRFError, CSRFProtect

from webapp.auth import bearer_token
from webapp.errors import api_error, wants_html

csrf = CSRFProtect()
CSRF_MESSAGE = (
    "This form or request is missing its security token, or the token has expired: reload the page and try again."
)
# /login?reason=csrf shows CSRF_MESSAGE: the refused sign-in cannot carry it in a flash (a session write).
LOGIN_REASON = "csrf"


class RefusalKeepsCookie(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a response to a request the CSRF check refused
    never sets (or deletes) the session cookie."""

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if g.get("csrf_refused"):
            response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def _cookie_may_authenticate() -> bool:
    if bearer_token() is not None:
        return False
    if request.path.startswith("/api/"):
        # A cookie that signs nobody in (forged, expired, signed out) authenticates nothing: the
        # view answers 401, as it would without the cookie, instead of a misleading csrf_failed.
        return current_app.config["SESSION_COOKIE_NAME"] in request.cookies and "_user_id" in session
    return True


def check_csrf() -> None:
    """before_request, after the body limits (it may parse a form) and before the rate limits."""
    if _cookie_may_authenticate():
        csrf.protect(apply_exemptions=True)


def _csrf_failed(exc: CSRFError):  # type: ignore[no-untyped-def]
    g.csrf_refused = True
    if wants_html():
        if request.endpoint == "signin.login":
            # Back to the form (a fresh GET gives a fresh token), the message in the address.
            return redirect(url_for("signin.login_page", next=request.args.get("next") or None, reason=LOGIN_REASON))
        return render_template("error.html", title="Please try again", message=CSRF_MESSAGE), 400
    return api_error(400, "csrf_failed", CSRF_MESSAGE)


def init_app(app: Flask) -> None:
    # The check runs from our own before_request (check_csrf) so that Bearer requests skip it and
    # it comes after the body limits; CSRFProtect's own hook would run for every request.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.session_interface = RefusalKeepsCookie()
    # A page left open for a day still signs in; tokens are bound to the session anyway.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 24 * 3600)
    csrf.init_app(app)
    app.before_request(check_csrf)
    app.register_error_handler(CSRFError, _csrf_failed)
