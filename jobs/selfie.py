"""Selfie jobs (high-priority queue): describe the attendee's face and match it against the event."""

from __future__ import annotations

from jobs.runtime import current_worker_name, get_runtime
from snapmatch.pipeline import mark_selfie_failed, process_selfie


def process_selfie_job(selfie_id: int, image_key: str) -> str:
    rt = get_runtime()
    return process_selfie(
        selfie_id,
        image_key=image_key,
        engine=rt.engine,
        storage=rt.storage,
        settings=rt.settings,
        redis=rt.redis,
        worker_name=current_worker_name(),
    ).value


def on_selfie_job_failure(job, connection, exc_type, exc_value, _traceback) -> None:  # type: ignore[no-untyped-def]
    if job.retries_left:
        return
    mark_selfie_failed(job.args[0], "processing_error", f"{exc_type.__name__ if exc_type else 'error'}: {exc_value}")
