"""Who am I (GET /api/me) and API tokens for scripts (POST /api/tokens, used by `snapmatch login`)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from snapmatch import accounts
from webapp.auth import Unauthorized, current_user, require_user
from webapp.csrf import csrf
from webapp.errors import json_body
from webapp.params import int_field, str_field
from webapp.ratelimits import sign_in_limits

bp = Blueprint("identity", __name__)


@bp.post("/api/tokens")
@csrf.exempt  # reads no cookie: the email and password in the body are the credentials
@sign_in_limits
def create_token():  # type: ignore[no-untyped-def]
    """Exchange an email and password for a new API token: 201 ``{"token", "id", "expires_at"}``."""
    body = json_body()
    email = str_field(body, "email", max_length=320)
    password = str_field(body, "password", max_length=1024)
    name = str_field(body, "name", max_length=100, required=False)
    expires_days = int_field(body, "expires_days", minimum=1, maximum=accounts.MAX_TOKEN_DAYS, required=False)
    user = accounts.authenticate(email, password)
    if user is None:
        raise Unauthorized("That email and password do not match an account.", code="invalid_credentials")
    issued = accounts.issue_token(user, name=name, expires_days=expires_days)
    expires_at = issued.expires_at.isoformat() if issued.expires_at else None
    return jsonify({"token": issued.token, "id": issued.id, "expires_at": expires_at}), 201


@bp.get("/api/me")
@require_user()
def me():  # type: ignore[no-untyped-def]
    user = current_user()
    return jsonify({"id": user.id, "email": user.email, "role": user.role.value})
