"""Analysis jobs: one RQ job per photo in immediate mode (after its faces are done), and the scheduled jobs
that submit and poll Gemini batch jobs and re-enqueue analyses whose job Redis lost."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache

from rq import get_current_job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from jobs.queues import QueueName, analysis_job_id, enqueue_analysis, get_queue
from jobs.runtime import current_job_generation, get_runtime
from jobs.schedules import recorded
from snapmatch import db
from snapmatch.analysis import analysis_enabled, records, stage
from snapmatch.analysis.gemini import GeminiAnalyzer, GeminiUnavailable, WaitLog
from snapmatch.analysis.quota import spread_delay
from snapmatch.errors import QuotaExceeded, RetryLater
from snapmatch.redis_client import get_redis
from snapmatch.schema import AnalysisMode, AnalysisStatus, photo_analyses
from snapmatch.settings import get_settings

log = logging.getLogger(__name__)
SWEEP_LIMIT = 2000


@lru_cache(maxsize=1)
def get_analyzer() -> GeminiAnalyzer:
    """Built once per worker process (before it forks work horses, see jobs.worker)."""
    return GeminiAnalyzer.from_settings(get_settings())


def queue_photo_analysis(photo_id: int) -> None:
    """Called when a photo's faces are done: record its pending analysis and, in immediate mode, enqueue it.

    A Redis failure here loses nothing: the row is pending and ``sweep_analyses`` enqueues it later.
    """
    settings = get_settings()
    if stage.queue_analysis(photo_id, settings) is AnalysisMode.IMMEDIATE:
        enqueue_analysis(get_redis(settings.REDIS_URL), photo_id, 0)


def analyze_photo_job(photo_id: int) -> str:
    rt = get_runtime()
    generation = current_job_generation()
    waits = WaitLog()
    rescheduled_for = None
    try:
        return stage.analyze_photo(
            photo_id, generation, analyzer=get_analyzer(), storage=rt.storage, redis=rt.redis, waits=waits
        ).value
    except RetryLater as exc:
        # Gemini asked us to wait (or the limiter did): free this worker and come back as a new generation.
        if records.claim_next_generation(photo_id, generation):
            waiting = ScheduledJobRegistry(queue=get_queue(QueueName.ANALYSIS, rt.redis)).count
            delay = spread_delay(exc.delay, waiting, get_analyzer().limiter.limits.rate)
            enqueue_analysis(rt.redis, photo_id, generation + 1, delay=delay)
        log.debug("analysis %s rescheduled in %.2f s: %s", photo_id, exc.delay, exc.message)
        rescheduled_for = exc.reason
        return "rescheduled"
    finally:
        _note(waits, rescheduled_for)


def _note(waits: WaitLog, rescheduled_for: str | None) -> None:
    """What the job waited for inside the worker, and why it was rescheduled, on the job (rq-dashboard and the
    acceptance test read it)."""
    job = get_current_job()
    if job is None:
        return
    job.meta["inline_waits"] = waits.inline_seconds
    if rescheduled_for:
        job.meta["rescheduled_for"] = rescheduled_for
    job.save_meta()


def on_analysis_job_failure(job, connection, exc_type, exc_value, _traceback) -> None:  # type: ignore[no-untyped-def]
    """Called by RQ after every failed attempt; only the last one ends the analysis (the photo stays done)."""
    if job.retries_left:
        return
    code = getattr(exc_value, "code", None) or "analysis_error"
    message = getattr(exc_value, "message", None) or "The photo could not be analysed."
    stage.fail_analysis(job.args[0], str(code), str(message))


@recorded("submit_analysis_batches")
def submit_analysis_batches() -> int:
    """Scheduled: send the photos waiting for batch-mode analysis to Gemini's Batch API when a batch is due."""
    settings = get_settings()
    if not analysis_enabled(settings):
        return 0
    try:
        names = stage.submit_waiting(
            analyzer=get_analyzer(), storage=get_runtime().storage, settings=settings, now=db.utcnow()
        )
    except (RetryLater, QuotaExceeded, GeminiUnavailable) as exc:
        # The rows went back to the waiting line; the next run (every ANALYSIS_BATCH_POLL_SECONDS) tries again.
        log.info("analysis batches not submitted now: %s", exc)
        return 0
    return len(names)


@recorded("poll_analysis_batches")
def poll_analysis_batches() -> dict[str, int]:
    """Scheduled: apply the results of finished Gemini batch jobs."""
    settings = get_settings()
    if not analysis_enabled(settings):
        return {"applied": 0, "requeued": 0}
    return stage.poll_batches(analyzer=get_analyzer(), redis=get_redis(settings.REDIS_URL))


@recorded("sweep_analyses")
def sweep_analyses() -> int:
    """Scheduled: re-enqueue pending immediate-mode analyses whose job is gone (Redis lost it, or the photo job
    died between writing the row and enqueueing). Compare-and-set on the generation, so it is safe anywhere."""
    from jobs.maintenance import live_jobs

    settings = get_settings()
    if not analysis_enabled(settings):
        return 0
    cutoff = db.utcnow() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    with db.connection() as conn:
        rows = conn.execute(
            select(photo_analyses.c.photo_id, photo_analyses.c.enqueue_count)
            .where(
                photo_analyses.c.status == AnalysisStatus.PENDING.value,
                photo_analyses.c.mode == AnalysisMode.IMMEDIATE.value,
                photo_analyses.c.updated_at < cutoff,
            )
            .limit(SWEEP_LIMIT)
        ).all()
    if not rows:
        return 0
    redis = get_redis(settings.REDIS_URL)
    alive = live_jobs(redis, [analysis_job_id(r.photo_id, r.enqueue_count) for r in rows])
    requeued = 0
    for row in rows:
        if analysis_job_id(row.photo_id, row.enqueue_count) in alive:
            continue
        if records.claim_next_generation(row.photo_id, row.enqueue_count):
            enqueue_analysis(redis, row.photo_id, row.enqueue_count + 1)
            requeued += 1
    if requeued:
        log.warning("analysis sweeper: %d analyses re-enqueued", requeued)
    return requeued
