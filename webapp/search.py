"""Photo analysis over HTTP: search an event's photos by bib number or words, and the owner's
event setting for it (immediate or batch analysis)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from snapmatch import events
from snapmatch.analysis.search import UNCHANGED, search_photos, update_event_settings
from snapmatch.errors import SnapmatchError
from webapp import params
from webapp.auth import current_user, require_user
from webapp.errors import json_body

bp = Blueprint("search", __name__)
MAX_PAGE = 10_000
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 24
SETTINGS_FIELDS = {"analysis_mode"}


@bp.get("/api/events/<id:event_id>/search")
@require_user()
def search(event_id: int):  # type: ignore[no-untyped-def]
    """Photos whose analysis has the bib number(s) and word(s) of ``q``: the whole event for its owner and
    admins, a joined attendee's own photos (the ones they may open) for the attendee."""
    user = current_user()
    event = events.viewable_event(user, event_id)
    page = params.int_arg("page", 1, minimum=1, maximum=MAX_PAGE)
    per_page = params.int_arg("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
    found = search_photos(event, user, request.args.get("q", ""), page, per_page)
    return jsonify(
        {
            "event_id": event_id,
            "q": request.args.get("q", ""),
            "page": page,
            "per_page": per_page,
            "total": found.total,
            "photos": found.photos,
        }
    )


@bp.patch("/api/events/<id:event_id>")
@require_user()
def patch_event(event_id: int):  # type: ignore[no-untyped-def]
    """Owner only: ``{"analysis_mode": "immediate"|"batch"|null}``."""
    event = events.owned_event(current_user(), event_id)
    body = json_body()
    if "search_event_wide" in body:
        # It let attendees find strangers' photos whose thumbnails they may not open; it is gone.
        raise SnapmatchError(
            "Event-wide search for attendees is not offered: an attendee searches only the photos they may see.",
            code="event_wide_search_unavailable",
        )
    unknown = set(body) - SETTINGS_FIELDS
    if unknown or not body:
        raise SnapmatchError(
            "Send analysis_mode: 'immediate', 'batch' or null (the server's default).",
            code="invalid_event_settings",
        )
    return jsonify(update_event_settings(event.id, analysis_mode=body.get("analysis_mode", UNCHANGED)))
