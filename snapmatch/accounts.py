"""Users, roles, passwords and API tokens. Passwords are scrypt-hashed; tokens are stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from snapmatch import db
from snapmatch.errors import Conflict, NotFound, SnapmatchError
from snapmatch.schema import Role, api_tokens, event_members, user_sessions, users

TOKEN_PREFIX = "smk_"
# Characters of a token kept in clear so people can tell tokens apart ("smk_" + 8): ~48 of its
# 256 random bits, which leaves the rest far beyond guessing.
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
# A token's last use is written at most this often: a busy script costs one UPDATE a minute.
LAST_USED_RESOLUTION_SECONDS = 60
MAX_TOKEN_DAYS = 3650

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=8, p=1)
    return hmac.compare_digest(candidate.hex(), digest)


def _user(row) -> User:  # type: ignore[no-untyped-def]
    return User(id=row.id, email=row.email, role=Role(row.role))


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise SnapmatchError(f"{email!r} is not an email address.", code="invalid_email", status=400)
    return email


def create_user(email: str, role: str, password: str) -> User:
    email = normalize_email(email)
    try:
        role_value = Role(role)
    except ValueError as exc:
        raise SnapmatchError(
            f"Unknown role {role!r}: use admin, photographer or attendee.", code="invalid_role"
        ) from exc
    if len(password) < 8:
        raise SnapmatchError("The password must have at least 8 characters.", code="weak_password")
    try:
        with db.transaction() as conn:
            new_id = conn.execute(
                insert(users).values(
                    email=email, password_hash=hash_password(password), role=role_value.value, created_at=db.utcnow()
                )
            ).inserted_primary_key[0]
    except IntegrityError as exc:
        raise Conflict(f"A user with email {email} already exists.", code="user_exists") from exc
    return User(id=new_id, email=email, role=role_value)


def find_user(email: str) -> User:
    with db.connection() as conn:
        row = conn.execute(select(users).where(users.c.email == normalize_email(email))).first()
    if row is None:
        raise NotFound(f"No user with email {email}.", code="user_not_found")
    return _user(row)


def get_user(user_id: int) -> User | None:
    with db.connection() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def authenticate(email: str, password: str) -> User | None:
    """The user with that email and password, else None. An unknown email costs one scrypt like a
    wrong password, so the answer's timing does not tell which emails have accounts."""
    with db.connection() as conn:
        row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    if row is None:
        check_password(_dummy_hash(), password)
        return None
    if not check_password(row.password_hash, password):
        return None
    return _user(row)


def last_joined_event_id(user: User) -> int | None:
    """The event the user joined most recently (an attendee's home after sign-in)."""
    with db.connection() as conn:
        return conn.execute(
            select(event_members.c.event_id)
            .where(event_members.c.user_id == user.id)
            .order_by(event_members.c.joined_at.desc(), event_members.c.event_id.desc())
            .limit(1)
        ).scalar()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class TokenExpired(SnapmatchError):
    code = "token_expired"
    status = 401


@dataclass(frozen=True)
class NewToken:
    id: int
    token: str
    expires_at: datetime | None


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str | None
    prefix: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _clean_token_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = " ".join(str(name).split())
    if len(name) > 100:
        raise SnapmatchError("A token name has at most 100 characters.", code="invalid_token_name")
    return name or None


def issue_token(user: User, *, name: str | None = None, expires_days: int | None = None) -> NewToken:
    """A new API token for the user; only its hash (and a short prefix) is stored, so it is shown once."""
    if expires_days is not None and not 1 <= expires_days <= MAX_TOKEN_DAYS:
        raise SnapmatchError(
            f"expires_days must be between 1 and {MAX_TOKEN_DAYS}.", code="invalid_parameter", status=400
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = db.utcnow()
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    with db.transaction() as conn:
        new_id = conn.execute(
            insert(api_tokens).values(
                user_id=user.id,
                token_hash=_token_hash(token),
                prefix=token[:SHOWN_PREFIX_LENGTH],
                name=_clean_token_name(name),
                created_at=now,
                expires_at=expires_at,
            )
        ).inserted_primary_key[0]
    return NewToken(id=new_id, token=token, expires_at=expires_at)


def create_token(email: str, *, name: str | None = None, expires_days: int | None = None) -> str:
    """A new API token for the user with that email (the CLI's and the tests' way)."""
    return issue_token(find_user(email), name=name, expires_days=expires_days).token


def user_for_token(token: str, now: datetime | None = None) -> User | None:
    """The token's user, or None for an unknown token; ``TokenExpired`` past its expiry. Records
    the last use, at most once per LAST_USED_RESOLUTION_SECONDS."""
    now = now or db.utcnow()
    with db.connection() as conn:
        row = conn.execute(
            select(users, api_tokens.c.id.label("token_id"), api_tokens.c.expires_at, api_tokens.c.last_used_at)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == _token_hash(token))
        ).first()
    if row is None:
        return None
    expires_at = _aware(row.expires_at)
    if expires_at is not None and expires_at <= now:
        raise TokenExpired("That API token has expired: create a new one.")
    last_used = _aware(row.last_used_at)
    stale_before = now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
    if last_used is None or last_used < stale_before:
        with db.transaction() as conn:
            conn.execute(
                update(api_tokens)
                .where(
                    api_tokens.c.id == row.token_id,
                    or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at < stale_before),
                )
                .values(last_used_at=now)
            )
    return _user(row)


def list_tokens(email: str) -> list[TokenInfo]:
    user = find_user(email)
    with db.connection() as conn:
        rows = conn.execute(select(api_tokens).where(api_tokens.c.user_id == user.id).order_by(api_tokens.c.id)).all()
    return [
        TokenInfo(
            id=r.id,
            name=r.name,
            prefix=r.prefix,
            created_at=_aware(r.created_at),  # type: ignore[arg-type]
            last_used_at=_aware(r.last_used_at),
            expires_at=_aware(r.expires_at),
        )
        for r in rows
    ]


def revoke_token(id_or_prefix: str) -> int:
    """Delete one token chosen by its id or its shown prefix; returns its id."""
    key = id_or_prefix.strip()
    with db.transaction() as conn:
        if key.isascii() and key.isdigit() and len(key) <= 18:
            ids = conn.execute(select(api_tokens.c.id).where(api_tokens.c.id == int(key))).scalars().all()
        elif key.startswith(TOKEN_PREFIX) and len(key) >= SHOWN_PREFIX_LENGTH:
            ids = (
                conn.execute(select(api_tokens.c.id).where(api_tokens.c.prefix == key[:SHOWN_PREFIX_LENGTH]))
                .scalars()
                .all()
            )
        else:
            raise SnapmatchError(
                f"Give a token id or its prefix (like {TOKEN_PREFIX}AbCd1234), not {key!r}.", code="invalid_token_ref"
            )
        if not ids:
            raise NotFound(f"No API token {key}.", code="token_not_found")
        if len(ids) > 1:
            raise Conflict(f"{len(ids)} tokens start with {key}: revoke by id.", code="ambiguous_token")
        conn.execute(delete(api_tokens).where(api_tokens.c.id == ids[0]))
    return ids[0]


def start_session(user: User, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new browser session for ``user``: returns its secret (kept in the signed cookie); only its
    hash is stored. The user's expired sessions are cleared on the way."""
    now = now or db.utcnow()
    secret = secrets.token_urlsafe(32)
    with db.transaction() as conn:
        conn.execute(delete(user_sessions).where(user_sessions.c.user_id == user.id, user_sessions.c.expires_at <= now))
        conn.execute(
            insert(user_sessions).values(
                user_id=user.id, secret_hash=_token_hash(secret), created_at=now, expires_at=now + lifetime
            )
        )
    return secret


def user_for_session(user_id: int, secret: str, now: datetime | None = None) -> User | None:
    """The user of a live session (not signed out, not expired), else None."""
    now = now or db.utcnow()
    with db.connection() as conn:
        row = conn.execute(
            select(users)
            .join(user_sessions, user_sessions.c.user_id == users.c.id)
            .where(
                user_sessions.c.secret_hash == _token_hash(secret),
                user_sessions.c.user_id == user_id,
                user_sessions.c.expires_at > now,
            )
        ).first()
    return _user(row) if row else None


def end_session(secret: str) -> None:
    with db.transaction() as conn:
        conn.execute(delete(user_sessions).where(user_sessions.c.secret_hash == _token_hash(secret)))


def end_all_sessions(email: str) -> int:
    """Sign the user out everywhere (every browser session); returns how many ended."""
    user = find_user(email)
    with db.transaction() as conn:
        return conn.execute(delete(user_sessions).where(user_sessions.c.user_id == user.id)).rowcount
