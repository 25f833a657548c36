"""Requeue what failed, through the database: a photo gets its next generation (compare-and-set on
``enqueue_count``, as the sweeper does) before its job is enqueued, so two admins clicking at once,
or an admin and the sweeper, never run one photo twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import and_, or_, select

from jobs.queues import QueueName, enqueue_photos, enqueue_selfie, get_queue, photo_job_id, selfie_job_id
from snapmatch import db
from snapmatch.errors import NotFound, SnapmatchError
from snapmatch.pipeline import claim_next_generation
from snapmatch.schema import PhotoStatus, SelfieStatus, photos, selfies

log = logging.getLogger(__name__)
BUDGET_EXCEEDED = "budget_exceeded"
# Statuses an admin may requeue by name; budget_exceeded is a quota_exceeded photo with that code.
REQUEUABLE_STATUSES = (PhotoStatus.FAILED.value, PhotoStatus.QUOTA_EXCEEDED.value, BUDGET_EXCEEDED)
MAX_PER_REQUEST = 5000
_JOB_ID = re.compile(r"^(photo|selfie)-(\d{1,18})-(\d{1,6})$")


@dataclass(frozen=True)
class RequeueFilter:
    """Which failed photos to requeue: any combination narrows the choice; empty means all failed."""

    photo_ids: tuple[int, ...] = ()
    statuses: tuple[str, ...] = ()
    error_code: str | None = None
    event_id: int | None = None
    limit: int = MAX_PER_REQUEST


def failed_photo_clause(statuses: tuple[str, ...]):  # type: ignore[no-untyped-def]
    wanted = statuses or REQUEUABLE_STATUSES
    clauses = []
    plain = [s for s in wanted if s != BUDGET_EXCEEDED]
    if plain:
        clauses.append(photos.c.status.in_(plain))
    if BUDGET_EXCEEDED in wanted:
        clauses.append(
            or_(
                photos.c.status == BUDGET_EXCEEDED,
                and_(photos.c.status == PhotoStatus.QUOTA_EXCEEDED.value, photos.c.error_code == BUDGET_EXCEEDED),
            )
        )
    return or_(*clauses)


def failed_photos(chosen: RequeueFilter) -> list:  # type: ignore[type-arg]
    query = select(photos.c.id, photos.c.enqueue_count).where(failed_photo_clause(chosen.statuses))
    if chosen.photo_ids:
        query = query.where(photos.c.id.in_(chosen.photo_ids))
    if chosen.error_code:
        query = query.where(photos.c.error_code == chosen.error_code)
    if chosen.event_id:
        query = query.where(photos.c.event_id == chosen.event_id)
    with db.connection() as conn:
        return list(conn.execute(query.order_by(photos.c.id).limit(chosen.limit)).all())


def _forget_failed_job(redis: Redis, queue: QueueName, job_id: str) -> None:
    """The old attempt leaves RQ's failed registry: it is being dealt with."""
    FailedJobRegistry(queue=get_queue(queue, redis)).remove(job_id)


def requeue_photos(redis: Redis, chosen: RequeueFilter) -> int:
    """Give each chosen failed photo a new generation and enqueue it; returns how many."""
    claimed: list[tuple[int, int]] = []
    for row in failed_photos(chosen):
        won = claim_next_generation(
            photos,
            row.id,
            row.enqueue_count,
            status=PhotoStatus.QUEUED.value,
            error_code=None,
            error_message=None,
            finished_at=None,
            # A fresh provider time budget: the admin decided the wait is worth it.
            first_started_at=None,
        )
        if won:
            claimed.append((row.id, row.enqueue_count + 1))
            _forget_failed_job(redis, QueueName.PHOTOS, photo_job_id(row.id, row.enqueue_count))
    if claimed:
        enqueue_photos(redis, claimed)
        log.warning("admin requeued %d photos", len(claimed))
    return len(claimed)


def _requeue_selfie(redis: Redis, selfie_id: int, generation: int) -> int:
    with db.connection() as conn:
        row = conn.execute(select(selfies).where(selfies.c.id == selfie_id)).first()
    if row is None or row.enqueue_count != generation or row.status != SelfieStatus.FAILED.value:
        return 0
    if not claim_next_generation(
        selfies, selfie_id, generation, status=SelfieStatus.PROCESSING.value, error_code=None, error_message=None
    ):
        return 0
    _forget_failed_job(redis, QueueName.SELFIES, selfie_job_id(selfie_id, generation))
    enqueue_selfie(redis, selfie_id, row.image_key, generation + 1)
    return 1


def requeue_job(redis: Redis, job_id: str) -> int:
    """Requeue one job by id: photo and selfie jobs through their rows (only the row's current
    generation, only if it failed); any other failed job through RQ's failed registry."""
    match = _JOB_ID.match(job_id)
    if match:
        kind, row_id, generation = match.group(1), int(match.group(2)), int(match.group(3))
        if kind == "selfie":
            return _requeue_selfie(redis, row_id, generation)
        rows = failed_photos(RequeueFilter(photo_ids=(row_id,)))
        if not rows or rows[0].enqueue_count != generation:
            return 0
        return requeue_photos(redis, RequeueFilter(photo_ids=(row_id,)))
    if len(job_id) > 200:
        raise SnapmatchError("That is not a job id.", code="invalid_job_id")
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError as exc:
        raise NotFound(
            "No such job (finished and failed jobs are kept for a while only).", code="job_not_found"
        ) from exc
    registry = (
        FailedJobRegistry(queue=get_queue(QueueName(job.origin), redis)) if job.origin in set(QueueName) else None
    )
    if registry is None or job.id not in registry:
        return 0
    registry.requeue(job)
    return 1
