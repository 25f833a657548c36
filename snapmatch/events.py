"""Events, membership (attendees who joined with the access code) and who may see what."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from snapmatch import db
from snapmatch.accounts import User
from snapmatch.cache import CacheName, cached
from snapmatch.errors import Forbidden, NotFound, SnapmatchError
from snapmatch.redis_client import get_redis
from snapmatch.schema import Role, event_members, events, matches, maybe_matches, photos, selfies

# No 0/O, 1/I/L: codes are read aloud and typed from printed cards.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True)
class Event:
    id: int
    owner_id: int
    name: str
    access_code: str


def _event(row) -> Event:  # type: ignore[no-untyped-def]
    return Event(id=row.id, owner_id=row.owner_id, name=row.name, access_code=row.access_code)


def create_event(owner: User, name: str) -> Event:
    if owner.role not in (Role.PHOTOGRAPHER, Role.ADMIN):
        raise Forbidden("Only photographers create events.", code="role_required")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise SnapmatchError("Give the event a name of 1 to 200 characters.", code="invalid_name")
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    with db.transaction() as conn:
        new_id = conn.execute(
            insert(events).values(owner_id=owner.id, name=name, access_code=code, created_at=db.utcnow())
        ).inserted_primary_key[0]
    return Event(id=new_id, owner_id=owner.id, name=name, access_code=code)


def get_event(event_id: int) -> Event:
    """The event (cached in Redis for every web process; ``cache.invalidate_event`` after a change)."""
    return Event(**cached(get_redis(), CacheName.EVENT, (event_id,), lambda: _load_event(event_id)))


def _load_event(event_id: int) -> dict[str, object]:
    """The event row as plain values; a missing event raises, so it is never cached as missing."""
    with db.connection() as conn:
        row = conn.execute(select(events).where(events.c.id == event_id)).first()
    if row is None:
        raise NotFound(f"No event {event_id}.", code="event_not_found")
    return asdict(_event(row))


def owned_event(user: User, event_id: int) -> Event:
    """The event if ``user`` owns it (or is admin); 404 otherwise, so ids are not probed."""
    event = get_event(event_id)
    if event.owner_id != user.id and not user.is_admin:
        raise NotFound(f"No event {event_id}.", code="event_not_found")
    return event


def is_member(user: User, event_id: int) -> bool:
    with db.connection() as conn:
        return (
            conn.execute(
                select(event_members.c.user_id).where(
                    event_members.c.event_id == event_id, event_members.c.user_id == user.id
                )
            ).first()
            is not None
        )


def viewable_event(user: User, event_id: int) -> Event:
    """The event for the owner, an admin, or an attendee who joined it."""
    event = get_event(event_id)
    if event.owner_id == user.id or user.is_admin or is_member(user, event_id):
        return event
    raise Forbidden("Join the event with its access code first.", code="not_joined")


def joined_event(user: User, event_id: int) -> Event:
    """The event for an attendee who joined it (selfie and my-photos need membership)."""
    event = get_event(event_id)
    if not is_member(user, event_id):
        raise Forbidden("Join the event with its access code first.", code="not_joined")
    return event


def check_access_code(event: Event, access_code: str) -> None:
    """Raise unless ``access_code`` is the event's (case and surrounding spaces do not matter)."""
    if not secrets.compare_digest((access_code or "").strip().upper().encode(), event.access_code.encode()):
        raise Forbidden("That access code is not this event's.", code="wrong_access_code")


def join_event(user: User, event_id: int, access_code: str) -> Event:
    event = get_event(event_id)
    check_access_code(event, access_code)
    try:
        with db.transaction() as conn:
            conn.execute(insert(event_members).values(event_id=event_id, user_id=user.id, joined_at=db.utcnow()))
    except IntegrityError:
        pass  # already a member: joining twice is fine
    return event


def photo_counts(event_id: int) -> dict[str, int]:
    with db.connection() as conn:
        rows = conn.execute(
            select(photos.c.status, func.count()).where(photos.c.event_id == event_id).group_by(photos.c.status)
        ).all()
    return {status: n for status, n in rows}


def can_view_photo(user: User, photo_row) -> bool:  # type: ignore[no-untyped-def]
    """Owner and admin see every photo; an attendee only photos their own selfie matched, or offers
    them under "maybe" (to confirm them they must see them)."""
    if user.is_admin:
        return True
    with db.connection() as conn:
        owner_id = conn.execute(select(events.c.owner_id).where(events.c.id == photo_row.event_id)).scalar()
        if owner_id == user.id:
            return True
        return any(
            conn.execute(
                select(table.c.id)
                .join(selfies, selfies.c.id == table.c.selfie_id)
                .where(table.c.photo_id == photo_row.id, selfies.c.user_id == user.id)
                .limit(1)
            ).first()
            is not None
            for table in (matches, maybe_matches)
        )


def owned_events(owner: User) -> list[dict[str, object]]:
    """The photographer's events, newest first, each with its photo count (the /events page)."""
    with db.connection() as conn:
        counts = dict(
            conn.execute(
                select(photos.c.event_id, func.count())
                .join(events, events.c.id == photos.c.event_id)
                .where(events.c.owner_id == owner.id)
                .group_by(photos.c.event_id)
            ).all()
        )
        rows = conn.execute(
            select(events.c.id, events.c.name, events.c.access_code, events.c.created_at)
            .where(events.c.owner_id == owner.id)
            .order_by(events.c.id.desc())
        ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "access_code": r.access_code,
            "created_at": r.created_at,
            "photos": counts.get(r.id, 0),
        }
        for r in rows
    ]
