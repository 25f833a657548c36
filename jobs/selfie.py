"""Selfie jobs (high-priority queue): describe the attendee's face and match it against the event."""

from __future__ import annotations

import logging

from jobs.queues import enqueue_selfie
from jobs.runtime import current_job_generation, current_worker_name, get_runtime
from snapmatch.errors import RetryLater
from snapmatch.pipeline import claim_next_generation, mark_selfie_failed, process_selfie
from snapmatch.schema import selfies

log = logging.getLogger(__name__)


def process_selfie_job(selfie_id: int, image_key: str) -> str:
    rt = get_runtime()
    try:
        return process_selfie(
            selfie_id,
            image_key=image_key,
            engine=rt.engine,
            storage=rt.storage,
            settings=rt.settings,
            redis=rt.redis,
            worker_name=current_worker_name(),
        ).value
    except RetryLater as exc:
        generation = current_job_generation()
        if claim_next_generation(selfies, selfie_id, generation, planned=True):
            enqueue_selfie(rt.redis, selfie_id, image_key, generation + 1, delay=exc.delay)
        log.info("selfie %s rescheduled in %.1f s: %s", selfie_id, exc.delay, exc.message)
        return "rescheduled"


def on_selfie_job_failure(job, connection, exc_type, exc_value, _traceback) -> None:  # type: ignore[no-untyped-def]
    if job.retries_left:
        return
    log.error(
        "selfie %s failed on every attempt (job %s): %s: %s",
        job.args[0],
        job.id,
        exc_type.__name__ if exc_type else "error",
        exc_value,
    )
    mark_selfie_failed(job.args[0], job.args[1], "processing_error")
