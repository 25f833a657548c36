"""Liveness and readiness probes (no auth): readiness checks Redis and the database."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from redis import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from snapmatch import db
from webapp.services import redis

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """``ok``/``error`` per check and nothing more (anyone can read it); why goes to the log."""
    checks: dict[str, str] = {}
    try:
        redis().ping()
        checks["redis"] = "ok"
    except RedisError:
        log.warning("readiness: Redis does not answer", exc_info=True)
        checks["redis"] = "error"
    try:
        with db.connection() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError:
        log.warning("readiness: the database does not answer", exc_info=True)
        checks["database"] = "error"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ready" if ready else "not_ready", "checks": checks})
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "5"
    return response
