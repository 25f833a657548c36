"""Queue names, retry policies and the enqueue functions the web app calls.

Job ids are derived from the row (``photo-<id>-<generation>``), so the database alone says
which job should exist; the sweeper bumps the generation when it re-enqueues.
"""

from __future__ import annotations

import time
from datetime import timedelta
from enum import StrEnum

from redis import Redis
from rq import Queue, Retry
from rq.callbacks import Callback
from rq.exceptions import DequeueTimeout

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


def enqueue_reference(connection: Redis, reference_id: int) -> str:
    """An attendee's extra reference photo: same queue and retries as selfies (they are waiting)."""
    return (
        get_queue(QueueName.SELFIES, connection)
        .enqueue(
            "jobs.reference.process_reference_job",
            reference_id,
            job_id=f"reference-{reference_id}",
            job_timeout=120,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=SELFIE_RETRY,
            description=f"reference photo {reference_id}",
        )
        .id
    )


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


# ---- pausing a queue -------------------------------------------------------------------------
# RQ can suspend whole workers but not one queue. A paused queue is a Redis flag; our workers'
# queue class (``PausableQueue``) leaves flagged queues out of every dequeue, and blocks for at
# most PAUSE_POLL_SECONDS at a time so a pause or resume takes effect within that. Jobs keep
# arriving in a paused queue and wait there; workers keep serving their other queues.
PAUSE_POLL_SECONDS = 5


def _paused_key() -> str:
    from snapmatch.redis_client import key

    return key("paused-queues")


def paused_queue_names(connection: Redis) -> set[str]:
    return {name.decode() for name in connection.smembers(_paused_key())}


def pause_queue(connection: Redis, name: QueueName) -> None:
    connection.sadd(_paused_key(), name.value)


def resume_queue(connection: Redis, name: QueueName) -> None:
    connection.srem(_paused_key(), name.value)


class PausableQueue(Queue):
    """RQ's queue, whose worker-side dequeue skips paused queues (see above)."""

    @classmethod
    def dequeue_any(cls, queues, timeout, connection, job_class=None, serializer=None, death_penalty_class=None):  # type: ignore[no-untyped-def, override]
        paused = paused_queue_names(connection)
        active = [q for q in queues if q.name not in paused]
        if not active:
            if timeout is None:
                return None
            time.sleep(min(timeout, PAUSE_POLL_SECONDS))
            raise DequeueTimeout(timeout, [q.key for q in queues])
        bounded = None if timeout is None else max(1, min(timeout, PAUSE_POLL_SECONDS))
        while True:
            # Always LPOP over the list (never RQ's single-queue LMOVE path): the worker serves
            # several queues and only removes the intermediate entry when it has exactly one.
            result = cls.lpop([q.key for q in active], bounded, connection=connection)
            if result is None:
                return None
            queue_key, job_id = (value.decode() if isinstance(value, bytes) else value for value in result)
            found = cls._fetch_dequeued_job(
                connection,
                queue_key,
                job_id,
                job_class=job_class,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
            if found is not None:
                return found
