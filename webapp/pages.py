"""The pages people use: the photographer's events and upload page, the attendee's join form and
gallery. Server-rendered; each page's script talks to the same JSON API that scripts use.

Hooks that outside checks rely on are listed in /work/shared/DESIGN.md ("Page contract").
"""

from __future__ import annotations

import io
from datetime import timedelta

import segno
from flask import Blueprint, Response, redirect, render_template, request, url_for

from snapmatch import accounts, events
from snapmatch.analysis import analysis_enabled
from snapmatch.errors import Conflict, SnapmatchError
from snapmatch.indexing import indexing_progress
from snapmatch.schema import Role
from webapp.auth import current_user, require_user, sign_in
from webapp.ratelimits import sign_in_limits
from webapp.services import redis, settings
from webapp.signin import home_path

bp = Blueprint("pages", __name__)


def join_url(event_id: int) -> str:
    return url_for("pages.join_page", event_id=event_id, _external=True)


@bp.get("/")
def home():  # type: ignore[no-untyped-def]
    user = current_user()
    return redirect(home_path(user) if user else url_for("signin.login_page"))


@bp.get("/events")
@require_user(Role.PHOTOGRAPHER)
def events_page():  # type: ignore[no-untyped-def]
    return render_template("events.html", events=events.owned_events(current_user()), error=None)


@bp.post("/events")
@require_user(Role.PHOTOGRAPHER)
def create_event_page():  # type: ignore[no-untyped-def]
    try:
        event = events.create_event(current_user(), request.form.get("name", "")[:400])
    except SnapmatchError as exc:
        page = render_template("events.html", events=events.owned_events(current_user()), error=exc.message)
        return page, exc.status
    return redirect(url_for("pages.event_page", event_id=event.id), code=303)


@bp.get("/events/<id:event_id>")
@require_user(Role.PHOTOGRAPHER)
def event_page(event_id: int):  # type: ignore[no-untyped-def]
    event = events.owned_event(current_user(), event_id)
    counts = events.photo_counts(event_id)
    return render_template(
        "event.html", event=event, counts=counts, total=sum(counts.values()), join_url=join_url(event_id)
    )


@bp.get("/events/<id:event_id>/qr.svg")
@require_user(Role.PHOTOGRAPHER)
def event_qr(event_id: int):  # type: ignore[no-untyped-def]
    """The join link as a QR code, to print or show on a screen at the venue."""
    events.owned_event(current_user(), event_id)
    out = io.BytesIO()
    segno.make(join_url(event_id), error="m").save(out, kind="svg", scale=8, border=2, title="Join link")
    response = Response(out.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _join_form(event, *, error: str | None = None, email: str = "", status: int = 200):  # type: ignore[no-untyped-def]
    return render_template("join.html", event=event, user=current_user(), error=error, email=email), status


@bp.get("/join/<id:event_id>")
def join_page(event_id: int):  # type: ignore[no-untyped-def]
    event = events.get_event(event_id)
    user = current_user()
    if user is not None and events.is_member(user, event_id):
        return redirect(url_for("pages.gallery_page", event_id=event_id))
    return _join_form(event)


@bp.post("/join/<id:event_id>")
@sign_in_limits
def join_submit(event_id: int):  # type: ignore[no-untyped-def]
    """Access code, and for a newcomer an email and password that make an attendee account."""
    event = events.get_event(event_id)
    code = request.form.get("access_code", "")[:64]
    email = request.form.get("email", "")[:320].strip()
    user = current_user()
    try:
        if not code.strip():
            raise SnapmatchError("Enter the access code printed with the event's link.", code="missing_access_code")
        if user is None:
            password = request.form.get("password", "")[:1024]
            if not email or not password:
                raise SnapmatchError("Enter your email and choose a password.", code="missing_credentials")
            # Check the code before making an account, so a wrong code leaves nothing behind.
            events.check_access_code(event, code)
            try:
                user = accounts.create_user(email, Role.ATTENDEE.value, password)
            except Conflict as exc:
                raise Conflict(
                    "An account with this email exists already: sign in first, then open this link again.",
                    code="user_exists",
                ) from exc
            sign_in(user, timedelta(hours=settings().SESSION_LIFETIME_HOURS))
        events.join_event(user, event_id, code)
    except SnapmatchError as exc:
        return _join_form(event, error=exc.message, email=email, status=exc.status)
    return redirect(url_for("pages.gallery_page", event_id=event_id), code=303)


@bp.get("/e/<id:event_id>")
@require_user(Role.ATTENDEE)
def gallery_page(event_id: int):  # type: ignore[no-untyped-def]
    user = current_user()
    event = events.get_event(event_id)
    if not events.is_member(user, event_id):
        return redirect(url_for("pages.join_page", event_id=event_id))
    indexing = indexing_progress(redis(), event_id)
    # The search box only where photos are described (Gemini analysis on): without it nothing is found.
    return render_template("gallery.html", event=event, indexing=indexing, search_enabled=analysis_enabled(settings()))


@bp.app_context_processor
def page_user() -> dict[str, object]:
    """The signed-in user for the page header (None for visitors)."""
    try:
        return {"page_user": current_user()}
    except SnapmatchError:
        return {"page_user": None}
