"""Maintenance jobs: the sweeper that makes "never lost" true when Redis or a worker is not.

The database says which photos and selfies are unfinished; for each one whose job is missing,
finished without finishing it, or held by a dead worker, the sweeper enqueues a new generation.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from sqlalchemy import select

from jobs.queues import (
    enqueue_photos,
    enqueue_provider_deletions,
    enqueue_selfie,
    photo_job_id,
    provider_deletions_job_id,
    selfie_job_id,
)
from jobs.schedules import recorded
from jobs.worker_liveness import liveness_key
from snapmatch import db, deletions
from snapmatch.pipeline import claim_next_generation, mark_photo_failed, mark_selfie_failed
from snapmatch.redis_client import get_redis, key
from snapmatch.schema import PhotoStatus, SelfieStatus, photos, selfies
from snapmatch.settings import get_settings
from snapmatch.storage import open_storage

log = logging.getLogger(__name__)
# A photo that kills its worker every time must end, not loop: after this many re-enqueues after a
# crash it fails. Generations started on purpose (provider waits, selfie replacements) do not count.
MAX_GENERATIONS = 6
# A job RQ says is "queued" but no queue holds may be one a worker has just popped: a worker on
# several queues pops with BLPOP, which has no intermediate list (rq/queue.py, dequeue_any), and its
# work horse marks the job started only after the fork. Such a job counts as lost only once it has
# been seen so for this long (in practice: on two sweeps, 10 s apart).
MISSING_JOB_GRACE_SECONDS = 5.0
MISSING_MARK_TTL_SECONDS = 600
SWEEP_LIMIT = 2000
_WAITING = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}


def _queue_members(redis: Redis, origins: set[str]) -> set[str]:
    """Job ids waiting in these queues or in their intermediate lists (being dequeued right now)."""
    pipe = redis.pipeline(transaction=False)
    for origin in origins:
        queue_key = Queue.redis_queue_namespace_prefix + origin
        pipe.lrange(queue_key, 0, -1)
        pipe.lrange(IntermediateQueue.get_intermediate_queue_key(queue_key), 0, -1)
    return {job_id.decode() for ids in pipe.execute() for job_id in ids}


def _missing_for_less_than(redis: Redis, job_ids: list[str], grace: float) -> set[str]:
    """The jobs among ``job_ids`` (queued in no queue) first seen so less than ``grace`` seconds ago.

    The first sighting is kept in Redis (``SET NX``), timed by the Redis server's clock, so sweeps
    from any number of schedulers on any hosts agree.
    """
    if not job_ids:
        return set()
    seconds, micros = redis.time()
    now = seconds + micros / 1e6
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        mark = key("sweeper", "missing", job_id)
        pipe.set(mark, now, nx=True, ex=MISSING_MARK_TTL_SECONDS)
        pipe.get(mark)
    first_seen = pipe.execute()[1::2]
    return {job_id for job_id, first in zip(job_ids, first_seen, strict=True) if now - float(first) < grace}


def crashes(enqueue_count: int, planned_generations: int) -> int:
    """Re-enqueues that followed a crash or a lost job, not a provider wait or a new upload."""
    return enqueue_count - planned_generations


def live_jobs(redis: Redis, job_ids: list[str]) -> set[str]:
    """The subset of ``job_ids`` that will still run, or is running on a live worker.

    A few pipelined round trips for any number of jobs, so a sweep over thousands of queued photos
    stays cheap. A job whose hash says "queued" must also be in its queue: a worker killed between
    popping a job and marking it started leaves a "queued" job that no queue holds.
    """
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(Job.key_for(job_id), "status", "worker_name", "origin")
    states = pipe.execute()
    alive: set[str] = set()
    started: list[tuple[str, str]] = []
    queued: dict[str, str] = {}
    for job_id, (status, worker_name, origin) in zip(job_ids, states, strict=True):
        status = status.decode() if status else None
        if status == JobStatus.QUEUED.value and origin:
            queued[job_id] = origin.decode()
        elif status in _WAITING:
            alive.add(job_id)
        elif status == JobStatus.STARTED.value and worker_name:
            started.append((job_id, worker_name.decode()))
    if queued:
        members = _queue_members(redis, set(queued.values()))
        alive.update(job_id for job_id in queued if job_id in members)
        alive.update(_missing_for_less_than(redis, [j for j in queued if j not in members], MISSING_JOB_GRACE_SECONDS))
    if started:
        pipe = redis.pipeline(transaction=False)
        for _job_id, worker_name in started:
            pipe.exists(liveness_key(worker_name))
        for (job_id, _worker), exists in zip(started, pipe.execute(), strict=True):
            if exists:
                alive.add(job_id)
    return alive


def _abandoned(table, rows, job_id, fail) -> tuple[list, int]:  # type: ignore[no-untyped-def]
    """Rows whose job is not alive, claimed for a new generation (compare-and-set on enqueue_count,
    so two sweepers never both re-enqueue one row). Rows out of generations are failed instead."""
    redis = get_redis()
    alive = live_jobs(redis, [job_id(r.id, r.enqueue_count) for r in rows])
    claimed, given_up = [], 0
    for row in rows:
        if job_id(row.id, row.enqueue_count) in alive:
            continue
        if crashes(row.enqueue_count, row.planned_generations) + 1 >= MAX_GENERATIONS:
            fail(row.id)
            given_up += 1
            continue
        if claim_next_generation(table, row.id, row.enqueue_count):
            claimed.append(row)
    return claimed, given_up


@recorded("sweep")
def sweep() -> dict[str, int]:
    """Re-enqueue abandoned photos and selfies. Safe to run anywhere, any number of times."""
    settings = get_settings()
    redis = get_redis()
    cutoff = db.utcnow() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    with db.connection() as conn:
        stale_photos = conn.execute(
            select(photos.c.id, photos.c.enqueue_count, photos.c.planned_generations)
            .where(
                photos.c.status.in_([PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value]),
                photos.c.updated_at < cutoff,
            )
            .order_by(photos.c.id)
            .limit(SWEEP_LIMIT)
        ).all()
        stale_selfies = conn.execute(
            select(selfies.c.id, selfies.c.image_key, selfies.c.enqueue_count, selfies.c.planned_generations)
            .where(selfies.c.status == SelfieStatus.PROCESSING.value, selfies.c.updated_at < cutoff)
            .limit(SWEEP_LIMIT)
        ).all()
    photo_rows, photos_failed = _abandoned(
        photos,
        stale_photos,
        photo_job_id,
        lambda i: mark_photo_failed(i, "abandoned", redis),
    )
    if photo_rows:
        enqueue_photos(redis, [(r.id, r.enqueue_count + 1) for r in photo_rows])
    keys = {r.id: r.image_key for r in stale_selfies}
    selfie_rows, selfies_failed = _abandoned(
        selfies,
        stale_selfies,
        selfie_job_id,
        lambda i: mark_selfie_failed(i, keys[i], "abandoned"),
    )
    for r in selfie_rows:
        enqueue_selfie(redis, r.id, r.image_key, r.enqueue_count + 1)
    result = {
        "photos_requeued": len(photo_rows),
        "selfies_requeued": len(selfie_rows),
        "failed": photos_failed + selfies_failed,
    }
    if any(result.values()):
        log.warning("sweeper: %s", result)
    enqueued = _drain_provider_deletions(redis)
    if enqueued:
        log.info("sweeper: provider face deletions enqueued for %d event(s)", enqueued)
    stored = deletions.retry_stored(open_storage(settings.STORAGE_URL))
    if stored:
        log.warning("sweeper: deleted %d stored image(s) a request could not", stored)
    return result


def delete_pending_provider_faces(event_id: int) -> int:
    """Delete the faces recorded for deletion in the event's provider collection, then the records."""
    from jobs.runtime import get_runtime
    from snapmatch.faces import CollectionFaceEngine

    engine = get_runtime().engine
    if not isinstance(engine, CollectionFaceEngine):
        return 0
    rows = deletions.provider_faces(event_id)
    if rows:
        # Faces already gone (deleted before, or the collection with them) count as done too.
        engine.delete_faces(event_id, [face_id for _, face_id in rows])
        deletions.done([row_id for row_id, _ in rows])
    return len(rows)


def _drain_provider_deletions(redis: Redis) -> int:
    """Enqueue the deletion job of every event with recorded provider deletions and no live job."""
    if get_settings().FACE_ENGINE != "rekognition":
        return 0
    event_ids = deletions.events_with_provider_faces()
    if not event_ids:
        return 0
    alive = live_jobs(redis, [provider_deletions_job_id(e) for e in event_ids])
    waiting = [e for e in event_ids if provider_deletions_job_id(e) not in alive]
    for event_id in waiting:
        enqueue_provider_deletions(redis, event_id)
    return len(waiting)


def purge_orphan_provider_faces(event_id: int) -> int:
    """Delete faces in the event's provider collection that no row knows: a worker died between
    IndexFaces and its commit. Faces of photos and selfies still in flight are left alone; the
    collection is listed before the database is read, so a face committed meanwhile counts as known."""
    from jobs.runtime import get_runtime
    from snapmatch.faces import CollectionFaceEngine
    from snapmatch.schema import faces

    engine = get_runtime().engine
    if not isinstance(engine, CollectionFaceEngine):
        return 0
    stored = engine.list_faces(event_id)
    with db.connection() as conn:
        known = set(
            conn.execute(
                select(faces.c.provider_face_id).where(
                    faces.c.event_id == event_id, faces.c.provider_face_id.is_not(None)
                )
            ).scalars()
        ) | set(
            conn.execute(
                select(selfies.c.provider_face_id).where(
                    selfies.c.event_id == event_id, selfies.c.provider_face_id.is_not(None)
                )
            ).scalars()
        )
        in_flight = {
            str(i)
            for i in conn.execute(
                select(photos.c.id).where(
                    photos.c.event_id == event_id,
                    photos.c.status.in_([PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value]),
                )
            ).scalars()
        } | {
            f"selfie-{i}"
            for i in conn.execute(
                select(selfies.c.id).where(
                    selfies.c.event_id == event_id, selfies.c.status == SelfieStatus.PROCESSING.value
                )
            ).scalars()
        }
    orphans = [face_id for face_id, external in stored.items() if face_id not in known and external not in in_flight]
    if orphans:
        engine.delete_faces(event_id, orphans)
        log.warning("event %s: deleted %d orphan provider faces", event_id, len(orphans))
    return len(orphans)


@recorded("purge_orphans_of_active_events")
def purge_orphans_of_active_events(hours: int = 24) -> int:
    """Run ``purge_orphan_provider_faces`` for every event with photo activity in the last ``hours``."""
    if get_settings().FACE_ENGINE != "rekognition":
        return 0
    since = db.utcnow() - timedelta(hours=hours)
    with db.connection() as conn:
        event_ids = (
            conn.execute(select(photos.c.event_id).where(photos.c.updated_at >= since).distinct()).scalars().all()
        )
    return sum(purge_orphan_provider_faces(event_id) for event_id in event_ids)
