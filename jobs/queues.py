"""Queue names, retry policies and the enqueue functions the web app calls.

Job ids are derived from the row (``photo-<id>-<generation>``), so the database alone says
which job should exist; the sweeper bumps the generation when it re-enqueues.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from redis import Redis
from rq import Queue, Retry
from rq.callbacks import Callback

from snapmatch.settings import get_settings


class QueueName(StrEnum):
    SELFIES = "selfies"
    PHOTOS = "photos"
    MAINTENANCE = "maintenance"
    ANALYSIS = "analysis"


# Priority order: a worker takes a selfie before anything else (an attendee is waiting), then the
# sweeper (milliseconds, and it must not starve behind a backlog of photos), then photos, and only
# then photo analyses (optional, slower, quota-bound: faces never wait behind them).
WORKER_QUEUES = [QueueName.SELFIES, QueueName.MAINTENANCE, QueueName.PHOTOS, QueueName.ANALYSIS]
# 3 attempts in all, with growing backoff; permanent errors never raise, so they are not retried.
PHOTO_RETRY = Retry(max=2, interval=[10, 60])
SELFIE_RETRY = Retry(max=2, interval=[2, 10])
PROCESS_SELFIE = "jobs.selfie.process_selfie_job"
ANALYZE_PHOTO = "jobs.analysis.analyze_photo_job"
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600


def get_queue(name: QueueName, connection: Redis) -> Queue:
    return Queue(name.value, connection=connection)


def photo_job_id(photo_id: int, generation: int) -> str:
    return f"photo-{photo_id}-{generation}"


def selfie_job_id(selfie_id: int, generation: int) -> str:
    return f"selfie-{selfie_id}-{generation}"


def photo_queue_length(connection: Redis) -> int:
    return get_queue(QueueName.PHOTOS, connection).count


def _photo_job_options(photo_id: int, generation: int) -> dict:
    return {
        "job_id": photo_job_id(photo_id, generation),
        "timeout": get_settings().PHOTO_JOB_TIMEOUT,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "retry": PHOTO_RETRY,
        "on_failure": Callback("jobs.photo.on_photo_job_failure"),
        "description": f"photo {photo_id}",
    }


def _selfie_job_options(selfie_id: int, generation: int) -> dict:
    return {
        "job_id": selfie_job_id(selfie_id, generation),
        "job_timeout": 120,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "retry": SELFIE_RETRY,
        "on_failure": Callback("jobs.selfie.on_selfie_job_failure"),
        "description": f"selfie {selfie_id}",
    }


def enqueue_photos(connection: Redis, photos: list[tuple[int, int]]) -> list[str]:
    """Enqueue (photo_id, generation) pairs in one round trip; returns the job ids."""
    queue = get_queue(QueueName.PHOTOS, connection)
    jobs = queue.enqueue_many(
        [
            Queue.prepare_data("jobs.photo.process_photo_job", args=(photo_id,), **_photo_job_options(photo_id, gen))
            for photo_id, gen in photos
        ]
    )
    return [job.id for job in jobs]


def enqueue_selfie(connection: Redis, selfie_id: int, image_key: str, generation: int, delay: float = 0) -> str:
    queue = get_queue(QueueName.SELFIES, connection)
    options = _selfie_job_options(selfie_id, generation)
    if delay > 0:
        return queue.enqueue_in(timedelta(seconds=delay), PROCESS_SELFIE, selfie_id, image_key, **options).id
    return queue.enqueue(PROCESS_SELFIE, selfie_id, image_key, **options).id


def schedule_photo(connection: Redis, photo_id: int, generation: int, delay: float) -> str:
    """Run the photo again after ``delay`` s as a new job: no worker waits, no retry is used."""
    options = _photo_job_options(photo_id, generation)
    options["job_timeout"] = options.pop("timeout")
    queue = get_queue(QueueName.PHOTOS, connection)
    return queue.enqueue_in(timedelta(seconds=delay), "jobs.photo.process_photo_job", photo_id, **options).id


def analysis_job_id(photo_id: int, generation: int) -> str:
    return f"analysis-{photo_id}-{generation}"


# Analysis waits (quota, cooldowns) reschedule without using these; they are for Gemini failing outright.
ANALYSIS_RETRY = Retry(max=2, interval=[30, 120])
# Three attempts of GEMINI_REQUEST_TIMEOUT_SECONDS (60 s) and their pauses fit.
ANALYSIS_JOB_TIMEOUT = 300


def enqueue_analysis(connection: Redis, photo_id: int, generation: int, delay: float = 0) -> str:
    """Analyse the photo with Gemini (now, or after ``delay`` s as a new job: no worker waits)."""
    queue = get_queue(QueueName.ANALYSIS, connection)
    options = {
        "job_id": analysis_job_id(photo_id, generation),
        "job_timeout": ANALYSIS_JOB_TIMEOUT,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "retry": ANALYSIS_RETRY,
        "on_failure": Callback("jobs.analysis.on_analysis_job_failure"),
        "description": f"analysis {photo_id}",
    }
    if delay > 0:
        return queue.enqueue_in(timedelta(seconds=delay), ANALYZE_PHOTO, photo_id, **options).id
    return queue.enqueue(ANALYZE_PHOTO, photo_id, **options).id


def enqueue_provider_face_deletion(connection: Redis, event_id: int, face_ids: list[str]) -> None:
    get_queue(QueueName.MAINTENANCE, connection).enqueue(
        "jobs.maintenance.delete_provider_faces",
        event_id,
        face_ids,
        retry=Retry(max=5, interval=[10, 30, 60, 300, 900]),
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
    )
