"""Photo analysis over HTTP: search an event's photos by bib number or words, and the owner's
event settings for it (event-wide search for attendees, immediate or batch analysis)."""

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
SETTINGS_FIELDS = {"search_event_wide", "analysis_mode"}


@bp.get("/api/events/<id:event_id>/search")
@require_user()
def search(event_id: int):  # type: ignore[no-untyped-def]
    """Photos whose analysis has the bib number(s) and word(s) of ``q``; attendees search their own photos
    unless the owner allowed event-wide search."""
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
    """Owner only: ``{"search_event_wide": bool, "analysis_mode": "immediate"|"batch"|null}``."""
    event = events.owned_event(current_user(), event_id)
    body = json_body()
    unknown = set(body) - SETTINGS_FIELDS
    if unknown or not body:
        raise SnapmatchError(
            "Send one or more of: search_event_wide (true/false), analysis_mode ('immediate', 'batch' or null).",
            code="invalid_event_settings",
        )
    wide = body.get("search_event_wide")
    if "search_event_wide" in body and not isinstance(wide, bool):
        raise SnapmatchError("search_event_wide is true or false.", code="invalid_event_settings")
    return jsonify(
        update_event_settings(
            event.id,
            search_event_wide=wide,
            analysis_mode=body.get("analysis_mode", UNCHANGED),
        )
    )
