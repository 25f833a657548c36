"""Users, roles, passwords and API tokens. Passwords are scrypt-hashed; tokens are stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from snapmatch import db
from snapmatch.errors import Conflict, NotFound, SnapmatchError
from snapmatch.schema import Role, api_tokens, users

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


def authenticate(email: str, password: str) -> User | None:
    with db.connection() as conn:
        row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
    if row is None or not check_password(row.password_hash, password):
        return None
    return _user(row)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(email: str) -> str:
    """A new API token for the user; only its hash is stored, so it is shown once."""
    user = find_user(email)
    token = "smk_" + secrets.token_urlsafe(32)
    with db.transaction() as conn:
        conn.execute(insert(api_tokens).values(user_id=user.id, token_hash=_token_hash(token), created_at=db.utcnow()))
    return token


def user_for_token(token: str) -> User | None:
    with db.connection() as conn:
        row = conn.execute(
            select(users)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == _token_hash(token))
        ).first()
    return _user(row) if row else None
