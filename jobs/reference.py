"""Reference-photo jobs (selfie queue): describe an attendee's extra reference photo and re-match them."""

from __future__ import annotations

from jobs.runtime import get_runtime
from snapmatch.corrections import process_reference


def process_reference_job(reference_id: int) -> str:
    rt = get_runtime()
    return process_reference(reference_id, engine=rt.engine, storage=rt.storage, settings=rt.settings, redis=rt.redis)
