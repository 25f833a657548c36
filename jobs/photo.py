"""Photo jobs: one RQ job per photo runs prepare + faces through the domain, then hands the photo to analysis."""

from __future__ import annotations

import logging

from redis import RedisError

from jobs.analysis import queue_photo_analysis
from jobs.queues import schedule_photo
from jobs.runtime import current_job_generation, current_worker_name, get_runtime
from snapmatch.errors import RetryLater
from snapmatch.pipeline import Outcome, claim_next_generation, mark_photo_failed, process_photo
from snapmatch.schema import PhotoStatus, photos

log = logging.getLogger(__name__)


def process_photo_job(photo_id: int) -> str:
    rt = get_runtime()
    try:
        outcome = process_photo(
            photo_id,
            engine=rt.engine,
            storage=rt.storage,
            settings=rt.settings,
            redis=rt.redis,
            worker_name=current_worker_name(),
        )
    except RetryLater as exc:
        # A provider asked us to wait: free this worker and come back later as a new generation.
        generation = current_job_generation()
        if claim_next_generation(photos, photo_id, generation, planned=True, status=PhotoStatus.QUEUED.value):
            schedule_photo(rt.redis, photo_id, generation + 1, exc.delay)
        log.info("photo %s rescheduled in %.1f s: %s", photo_id, exc.delay, exc.message)
        return "rescheduled"
    if outcome in (Outcome.DONE, Outcome.ALREADY_DONE):
        # Analysis is a job family of its own: the photo is done for faces whatever happens to it.
        try:
            queue_photo_analysis(photo_id)
        except RedisError as exc:
            log.warning("analysis of photo %s not enqueued, the analysis sweeper will: %s", photo_id, exc)
    return outcome.value


def on_photo_job_failure(job, connection, exc_type, exc_value, _traceback) -> None:  # type: ignore[no-untyped-def]
    """Called by RQ after every failed attempt; only the last one marks the photo failed."""
    if job.retries_left:
        return
    log.error(
        "photo %s failed on every attempt (job %s): %s: %s",
        job.args[0],
        job.id,
        exc_type.__name__ if exc_type else "error",
        exc_value,
    )
    mark_photo_failed(job.args[0], "processing_error", get_runtime().redis)
