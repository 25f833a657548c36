"""Admin API (provider usage and limits for now; queues, requeue and cache follow with the admin issue)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from snapmatch import db
from snapmatch.analysis.overview import analysis_overview
from snapmatch.costs import CostTracker
from snapmatch.limiter import ProviderLimiter, limits_for
from snapmatch.schema import Role
from webapp.auth import require_user
from webapp.services import redis, settings

bp = Blueprint("admin", __name__)
PROVIDERS = ("rekognition", "gemini")


@bp.get("/api/admin/providers")
@require_user(Role.ADMIN)
def providers():  # type: ignore[no-untyped-def]
    """Per provider: billable calls by operation, throttles, estimated cost, and the shared limiter's state."""
    cfg = settings()
    report = CostTracker.from_settings(redis(), cfg).provider_report()
    out = {}
    for name in sorted(set(PROVIDERS) | set(report)):
        entry = dict(report.get(name, {}))
        if name in PROVIDERS:
            entry["limiter"] = ProviderLimiter(redis(), limits_for(name, cfg), cfg.REDIS_PREFIX).state()
        out[name] = entry
    out["gemini"]["analysis"] = analysis_overview(cfg, db.utcnow())
    return jsonify({"providers": out})
