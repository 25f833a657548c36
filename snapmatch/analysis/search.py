"""Search an event's analysed photos: bib numbers exactly, tags/captions/visible text by words, restricted to
what the caller may see. PostgreSQL full-text search where the database is PostgreSQL; elsewhere a portable
whole-word match over the same normalised text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, literal_column, select, update

from snapmatch import db
from snapmatch.accounts import User
from snapmatch.analysis.description import normalize_number, search_words
from snapmatch.errors import SnapmatchError
from snapmatch.events import Event, can_view_photo
from snapmatch.schema import (
    SEARCH_TS_CONFIG,
    AnalysisMode,
    AnalysisStatus,
    PhotoStatus,
    events,
    matches,
    photo_analyses,
    photo_numbers,
    photos,
    selfies,
)

MAX_QUERY_CHARS = 200
MAX_TERMS = 10


# PATCH leaves a setting alone when its key is absent (None is a value for analysis_mode: "the default").
UNCHANGED = object()


class InvalidSearch(SnapmatchError):
    code = "invalid_query"
    status = 400


@dataclass(frozen=True)
class SearchQuery:
    numbers: list[str]  # every one must be on the photo (exact)
    words: list[str]  # every one must be in its caption, tags or visible text


@dataclass(frozen=True)
class SearchPage:
    total: int
    photos: list[dict[str, object]]


def parse_query(q: str) -> SearchQuery:
    """Split a search box's text into bib numbers (all digits) and words; a photo must match all of them."""
    text = (q or "").strip()
    if not text:
        raise InvalidSearch("Type a bib number or a word to search for (?q=...).", code="missing_query")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"Keep the search under {MAX_QUERY_CHARS} characters.", code="query_too_long")
    terms = search_words(text)
    if not terms:
        raise InvalidSearch("Search with letters or digits.", code="invalid_query")
    if len(terms) > MAX_TERMS:
        raise InvalidSearch(f"Search with at most {MAX_TERMS} words or numbers.", code="query_too_long")
    numbers = [n for n in (normalize_number(t) for t in terms if t.isdigit()) if n]
    words = [t for t in terms if not t.isdigit()]
    return SearchQuery(numbers=list(dict.fromkeys(numbers)), words=list(dict.fromkeys(words)))


def attendee_scope(event: Event, user: User) -> bool:
    """True when the search must stay within the photos the user may see: everyone but the event's owner
    and admins. Never wider: a result is a thumbnail link, and an attendee may not see a stranger's photo
    (the photo endpoints answer 404), so no event setting widens an attendee's search."""
    return not (user.is_admin or event.owner_id == user.id)


def search_vector() -> ColumnElement[Any]:
    """The expression of the GIN index ``ix_photo_analyses_search`` (schema.py), with '' as a constant: the
    planner uses the index only for the same expression."""
    config = literal_column(f"'{SEARCH_TS_CONFIG}'::regconfig")
    return func.to_tsvector(config, func.coalesce(photo_analyses.c.search_text, literal_column("''::text")))


def _words_clause(words: list[str], dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        config = literal_column(f"'{SEARCH_TS_CONFIG}'::regconfig")
        return search_vector().op("@@")(func.plainto_tsquery(config, " ".join(words)))
    # Portable: search_text is stored as lower-case words separated by single spaces.
    padded = literal(" ") + func.coalesce(photo_analyses.c.search_text, "") + literal(" ")
    return and_(*[padded.like(f"% {word} %") for word in words])


def build_search(event_id: int, query: SearchQuery, viewer_id: int | None, dialect: str) -> Select:
    """The photo ids matching ``query`` in the event, newest analyses last; ``viewer_id`` limits them to photos
    that attendee's selfies matched (the rule of ``events.can_view_photo``)."""
    stmt = (
        select(photos.c.id, photo_analyses.c.caption, photo_analyses.c.numbers)
        .join(photo_analyses, photo_analyses.c.photo_id == photos.c.id)
        .where(
            photos.c.event_id == event_id,
            photos.c.status == PhotoStatus.DONE.value,
            photo_analyses.c.status == AnalysisStatus.DONE.value,
        )
    )
    for number in query.numbers:
        # From the (event, number) index to the photos, not from every photo of the event to its numbers.
        stmt = stmt.where(
            photos.c.id.in_(
                select(photo_numbers.c.photo_id).where(
                    photo_numbers.c.event_id == event_id, photo_numbers.c.number == number
                )
            )
        )
    if query.words:
        stmt = stmt.where(_words_clause(query.words, dialect))
    if viewer_id is not None:
        stmt = stmt.where(
            exists().where(
                matches.c.photo_id == photos.c.id,
                matches.c.selfie_id == selfies.c.id,
                selfies.c.user_id == viewer_id,
            )
        )
    return stmt


def search_photos(event: Event, user: User, q: str, page: int, per_page: int) -> SearchPage:
    query = parse_query(q)
    viewer_id = user.id if attendee_scope(event, user) else None
    dialect = db.get_engine().dialect.name
    stmt = build_search(event.id, query, viewer_id, dialect)
    with db.connection() as conn:
        total = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar() or 0
        rows = conn.execute(stmt.order_by(photos.c.id).limit(per_page).offset((page - 1) * per_page)).all()
    found = []
    for row in rows:
        # The query already applies the visibility rule; checking each result with the one rule the photo
        # endpoints use keeps search from ever showing more than they would, should that rule grow.
        if viewer_id is not None and not can_view_photo(user, _PhotoRef(row.id, event.id)):
            continue
        found.append(
            {
                "photo_id": row.id,
                "thumbnail_url": f"/api/photos/{row.id}/thumbnail",
                "caption": row.caption,
                "bib_numbers": json.loads(row.numbers or "[]"),
            }
        )
    return SearchPage(total=total, photos=found)


@dataclass(frozen=True)
class _PhotoRef:
    id: int
    event_id: int


def update_event_settings(event_id: int, *, analysis_mode: str | None | object) -> dict:
    """Change the event's analysis settings (the caller checked ownership)."""
    values: dict[str, object] = {}
    if analysis_mode is not UNCHANGED:
        if analysis_mode is not None and analysis_mode not in (m.value for m in AnalysisMode):
            raise SnapmatchError(
                "analysis_mode is 'immediate', 'batch' or null (the server's default).", code="invalid_analysis_mode"
            )
        values["analysis_mode"] = analysis_mode
    with db.transaction() as conn:
        if values:
            conn.execute(update(events).where(events.c.id == event_id).values(**values))
        row = conn.execute(select(events.c.id, events.c.analysis_mode).where(events.c.id == event_id)).one()
    return {"id": row.id, "analysis_mode": row.analysis_mode}
