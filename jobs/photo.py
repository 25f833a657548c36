"""Photo jobs: one RQ job per photo runs prepare + faces (+ analysis later) through the domain."""

from __future__ import annotations

from jobs.runtime import current_worker_name, get_runtime
from snapmatch.pipeline import mark_photo_failed, process_photo


def process_photo_job(photo_id: int) -> str:
    rt = get_runtime()
    return process_photo(
        photo_id,
        engine=rt.engine,
        storage=rt.storage,
        settings=rt.settings,
        redis=rt.redis,
        worker_name=current_worker_name(),
    ).value


def on_photo_job_failure(job, connection, exc_type, exc_value, _traceback) -> None:  # type: ignore[no-untyped-def]
    """Called by RQ after every failed attempt; only the last one marks the photo failed."""
    if job.retries_left:
        return
    photo_id = job.args[0]
    mark_photo_failed(
        photo_id,
        "processing_error",
        f"Processing failed on every attempt; last error: {exc_type.__name__ if exc_type else 'error'}: {exc_value}",
        get_runtime().redis,
    )
