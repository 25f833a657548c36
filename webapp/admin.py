"""Admin API and page: queues and workers (from ``jobs.monitor``), failures and requeue, pause and
resume, caches, providers, schedules. Every route needs the admin role (session or Bearer)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from sqlalchemy import func, select

from jobs import monitor
from jobs.queues import QueueName, pause_queue, resume_queue
from jobs.requeue import (
    MAX_PER_REQUEST,
    REQUEUABLE_STATUSES,
    RequeueFilter,
    failed_photo_clause,
    requeue_job,
    requeue_photos,
)
from jobs.schedules import last_runs
from snapmatch import cache, db
from snapmatch.analysis.overview import analysis_overview
from snapmatch.costs import CostTracker
from snapmatch.errors import NotFound
from snapmatch.limiter import ProviderLimiter, limits_for
from snapmatch.schema import Role, events, photos
from webapp.auth import require_user
from webapp.errors import json_body
from webapp.params import MAX_ID, InvalidParameter, MissingParameter, int_field, parse_int, str_field
from webapp.services import redis, settings

bp = Blueprint("admin", __name__)
PROVIDERS = ("rekognition", "gemini")
MAX_CODE_LENGTH = 64


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


@bp.get("/api/admin/queue/stats")
@require_user(Role.ADMIN)
def queue_stats():  # type: ignore[no-untyped-def]
    return jsonify(monitor.queue_stats(redis()))


@bp.get("/api/admin/queue/history")
@require_user(Role.ADMIN)
def queue_history():  # type: ignore[no-untyped-def]
    """Per-minute samples of depth and throughput over the last hour (written by the scheduler)."""
    return jsonify({"samples": monitor.history(redis())})


@bp.get("/api/admin/queue/jobs/<job_id>")
@require_user(Role.ADMIN)
def queue_job(job_id: str):  # type: ignore[no-untyped-def]
    report = monitor.job_report(redis(), job_id[:200])
    if report is None:
        raise NotFound("No such job (finished and failed jobs are kept for a while only).", code="job_not_found")
    return jsonify(report)


def _queue_name(name: str) -> QueueName:
    try:
        return QueueName(name)
    except ValueError as exc:
        known = ", ".join(q.value for q in QueueName)
        raise NotFound(f"No queue {name[:40]!r}; queues are {known}.", code="queue_not_found") from exc


@bp.post("/api/admin/queue/<name>/pause")
@require_user(Role.ADMIN)
def pause(name: str):  # type: ignore[no-untyped-def]
    queue = _queue_name(name)
    pause_queue(redis(), queue)
    return jsonify({"queue": queue.value, "paused": True})


@bp.post("/api/admin/queue/<name>/resume")
@require_user(Role.ADMIN)
def resume(name: str):  # type: ignore[no-untyped-def]
    queue = _queue_name(name)
    resume_queue(redis(), queue)
    return jsonify({"queue": queue.value, "paused": False})


def _id_list(value: object, field: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_PER_REQUEST:
        raise InvalidParameter(f"{field} must be a list of at most {MAX_PER_REQUEST} ids.")
    return tuple(parse_int(field, v, 1, MAX_ID) for v in value)


def requeue_filter(body: dict) -> RequeueFilter | None:
    """Parse the requeue body; None when it names a single job instead. Accepted fields:
    ``photo_id``/``photo_ids``, ``error_code``, ``status`` (failed, quota_exceeded, budget_exceeded),
    ``event_id``, or ``all: true``."""
    known = {"job_id", "photo_id", "photo_ids", "error_code", "status", "event_id", "all"}
    unknown = set(body) - known
    if unknown:
        raise InvalidParameter(f"Unknown field(s): {', '.join(sorted(unknown))[:100]}.")
    if not body:
        raise MissingParameter("Say what to requeue: job_id, photo_ids, error_code, status, or all: true.")
    if "job_id" in body:
        return None
    photo_ids: tuple[int, ...] = ()
    if "photo_id" in body:
        photo_ids = (parse_int("photo_id", body["photo_id"], 1, MAX_ID),)
    if "photo_ids" in body:
        photo_ids += _id_list(body["photo_ids"], "photo_ids")
    statuses: tuple[str, ...] = ()
    status = str_field(body, "status", max_length=MAX_CODE_LENGTH, required=False)
    if status is not None:
        if status not in REQUEUABLE_STATUSES:
            raise InvalidParameter(f"status must be one of {', '.join(REQUEUABLE_STATUSES)}.")
        statuses = (status,)
    error_code = str_field(body, "error_code", max_length=MAX_CODE_LENGTH, required=False)
    event_id = int_field(body, "event_id", minimum=1, required=False)
    if not (photo_ids or statuses or error_code or event_id or body.get("all") is True):
        raise InvalidParameter("Send all: true to requeue every failed photo.")
    return RequeueFilter(photo_ids=photo_ids, statuses=statuses, error_code=error_code, event_id=event_id)


@bp.post("/api/admin/queue/failed/requeue")
@require_user(Role.ADMIN)
def requeue_failed():  # type: ignore[no-untyped-def]
    body = json_body()
    chosen = requeue_filter(body)
    if chosen is None:
        job_id = str_field(body, "job_id", max_length=200)
        return jsonify({"requeued": requeue_job(redis(), job_id)})  # type: ignore[arg-type]
    return jsonify({"requeued": requeue_photos(redis(), chosen)})


@bp.get("/api/admin/failures")
@require_user(Role.ADMIN)
def failures():  # type: ignore[no-untyped-def]
    """Failed photos: counts by status and reason, and the 100 most recent with their reason."""
    failed = failed_photo_clause(())
    with db.connection() as conn:
        counts = conn.execute(
            select(photos.c.status, photos.c.error_code, func.count())
            .where(failed)
            .group_by(photos.c.status, photos.c.error_code)
            .order_by(func.count().desc())
        ).all()
        rows = conn.execute(
            select(
                photos.c.id,
                photos.c.event_id,
                events.c.name.label("event_name"),
                photos.c.filename,
                photos.c.status,
                photos.c.error_code,
                photos.c.error_message,
                photos.c.enqueue_count,
                photos.c.updated_at,
            )
            .join(events, events.c.id == photos.c.event_id)
            .where(failed)
            .order_by(photos.c.updated_at.desc())
            .limit(100)
        ).all()
    return jsonify(
        {
            "by_reason": [{"status": s, "error_code": c, "count": n} for s, c, n in counts],
            "photos": [
                {
                    "photo_id": r.id,
                    "event_id": r.event_id,
                    "event_name": r.event_name,
                    "filename": r.filename,
                    "status": r.status,
                    "error_code": r.error_code,
                    "error_message": r.error_message,
                    "job_id": f"photo-{r.id}-{r.enqueue_count}",
                    "updated_at": r.updated_at.isoformat() if r.updated_at else None,
                }
                for r in rows
            ],
        }
    )


@bp.get("/api/admin/caches")
@require_user(Role.ADMIN)
def caches():  # type: ignore[no-untyped-def]
    return jsonify({"caches": cache.stats(redis())})


@bp.post("/api/admin/cache/clear")
@require_user(Role.ADMIN)
def cache_clear():  # type: ignore[no-untyped-def]
    return jsonify({"cleared": cache.clear_all(redis())})


@bp.get("/api/admin/schedules")
@require_user(Role.ADMIN)
def schedules():  # type: ignore[no-untyped-def]
    return jsonify({"schedules": last_runs(redis())})


@bp.get("/api/status")
@require_user(Role.ADMIN)
def status():  # type: ignore[no-untyped-def]
    return jsonify(monitor.status(redis()))


@bp.get("/admin")
@require_user(Role.ADMIN)
def admin_page():  # type: ignore[no-untyped-def]
    return render_template("admin.html")
