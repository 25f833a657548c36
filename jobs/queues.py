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


# Priority order: a worker takes a selfie before anything else (an attendee is waiting), then the
# sweeper (milliseconds, and it must not starve behind a backlog of photos), then photos.
WORKER_QUEUES = [QueueName.SELFIES, QueueName.MAINTENANCE, QueueName.PHOTOS]
# 3 attempts in all, with growing backoff; permanent errors never raise, so they are not retried.
PHOTO_RETRY = Retry(max=2, interval=[10, 60])
SELFIE_RETRY = Retry(max=2, interval=[2, 10])
PROCESS_SELFIE = "jobs.selfie.process_selfie_job"
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


def provider_deletions_job_id(event_id: int) -> str:
    return f"provider-deletions-{event_id}"


def enqueue_provider_deletions(connection: Redis, event_id: int) -> str:
    """Delete the event's faces recorded in ``pending_deletions`` at the provider. The rows are
    the truth: the sweeper enqueues this again for as long as any remain, so no RQ retry is needed."""
    return (
        get_queue(QueueName.MAINTENANCE, connection)
        .enqueue(
            "jobs.maintenance.delete_pending_provider_faces",
            event_id,
            job_id=provider_deletions_job_id(event_id),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"provider face deletions of event {event_id}",
        )
        .id
    )
