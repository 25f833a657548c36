"""Rate limits on requests (flask-limiter, counted in Redis so every web process shares them).

One ``limiter`` for the app: decorate a view with one of the limits below, or with
``limiter.limit("…")`` for a new one. A breach answers 429 with Retry-After: the JSON error
``rate_limited`` for API clients, or the page with a readable message for browsers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, render_template, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from webapp.errors import api_error, wants_html
from webapp.services import settings

F = TypeVar("F", bound=Callable[..., object])

limiter = Limiter(
    key_func=get_remote_address,
    # Redis unreachable: count in this process's memory rather than refuse every sign-in.
    in_memory_fallback_enabled=True,
    swallow_errors=True,
)


def client_address() -> str:
    """The caller's address (behind TRUSTED_PROXIES reverse proxies, the one they report)."""
    return get_remote_address()


def submitted_email() -> str:
    """The email a sign-in attempt names (form or JSON), hashed: limits per account without
    keeping addresses in Redis."""
    if request.is_json:
        body = request.get_json(silent=True)
        email = body.get("email") if isinstance(body, dict) else None
    else:
        email = request.form.get("email")
    normalized = str(email or "").strip().lower()
    return hashlib.sha256(normalized.encode()).hexdigest()[:32]


def sign_in_limits(view: F) -> F:
    """Sign-in attempts (POST /login, POST /api/tokens): per client address and per email, shared by
    both routes, so a guesser cannot double the budget by switching between them."""
    view = limiter.shared_limit(
        lambda: settings().LOGIN_RATE_LIMIT_PER_EMAIL, scope="sign-in-email", key_func=submitted_email, methods=["POST"]
    )(view)
    return limiter.shared_limit(
        lambda: settings().LOGIN_RATE_LIMIT_PER_IP, scope="sign-in-ip", key_func=client_address, methods=["POST"]
    )(view)


def retry_after_seconds() -> int:
    breached = limiter.current_limit
    if breached is None:
        return 60
    return max(1, int(breached.reset_at - time.time()))


def _rate_limited(exc: RateLimitExceeded):  # type: ignore[no-untyped-def]
    retry_after = retry_after_seconds()
    message = f"Too many attempts; try again in {retry_after} seconds."
    headers = {"Retry-After": str(retry_after)}
    if wants_html() and request.endpoint == "signin.login":
        return render_template("login.html", error=message, email="", next_path=""), 429, headers
    if wants_html():
        return render_template("error.html", title="Slow down", message=message), 429, headers
    return api_error(429, "rate_limited", message, retry_after=retry_after)


def init_app(app: Flask) -> None:
    cfg = app.config["SNAPMATCH"]
    app.config.setdefault("RATELIMIT_STORAGE_URI", cfg.REDIS_URL)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"{cfg.REDIS_PREFIX}:ratelimit")
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
