"""Queue and worker statistics in one place (as Redash's ``monitor``), read from RQ's own registries.

The admin API, the admin page, ``/api/status`` and ``/metrics`` all report what this module says,
so they cannot disagree. Everything is a few pipelined Redis round trips.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import utcparse

from jobs.queues import QueueName, get_queue, paused_queue_names
from snapmatch.redis_client import key

# How many of the most recent finished / failed jobs per queue the rates and durations are read from.
RECENT_SAMPLE = 500
THROUGHPUT_WINDOW_SECONDS = 60
DURATION_WINDOW_SECONDS = 15 * 60
HISTORY_MINUTES = 60


def history_key() -> str:
    return key("monitor", "history")


def _parse(raw: bytes | None) -> float | None:
    if not raw:
        return None
    return utcparse(raw.decode()).timestamp()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class _Recent:
    """Times (started, ended) of the most recent jobs of one registry."""

    ended: list[float]
    durations: list[tuple[float, float]]  # (ended, seconds it ran)


def _recent(redis: Redis, registry_key: str) -> _Recent:
    job_ids = [j.decode() for j in redis.zrevrange(registry_key, 0, RECENT_SAMPLE - 1)]
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(Job.key_for(job_id), "started_at", "ended_at")
    ended: list[float] = []
    durations: list[tuple[float, float]] = []
    for started_raw, ended_raw in pipe.execute() if job_ids else []:
        ended_at = _parse(ended_raw)
        if ended_at is None:
            continue
        ended.append(ended_at)
        started_at = _parse(started_raw)
        if started_at is not None:
            durations.append((ended_at, max(0.0, ended_at - started_at)))
    return _Recent(ended=ended, durations=durations)


def _oldest_waiting_age(redis: Redis, queue: Queue, now: float) -> float | None:
    first = redis.lindex(queue.key, 0)
    if first is None:
        return None
    enqueued = _parse(redis.hget(Job.key_for(first.decode()), "enqueued_at"))
    return None if enqueued is None else round(max(0.0, now - enqueued), 3)


def worker_report(redis: Redis) -> list[dict[str, Any]]:
    """Every registered worker: name, state, queues, current job, counters."""
    out = []
    for worker in Worker.all(connection=redis):
        out.append(
            {
                "name": worker.name,
                "state": worker.get_state(),
                "queues": worker.queue_names(),
                "current_job": worker.get_current_job_id(),
                "successful_jobs": worker.successful_job_count,
                "failed_jobs": worker.failed_job_count,
                "busy_seconds": round(worker.total_working_time, 3),
                "last_heartbeat": worker.last_heartbeat.isoformat() if worker.last_heartbeat else None,
            }
        )
    return sorted(out, key=lambda w: w["name"])


def queue_report(redis: Redis, name: QueueName, workers: list[dict[str, Any]], paused: set[str]) -> dict[str, Any]:
    queue = get_queue(name, redis)
    now = time.time()
    finished = _recent(redis, FinishedJobRegistry(queue=queue).key)
    failed = _recent(redis, FailedJobRegistry(queue=queue).key)
    recent_finished = [e for e in finished.ended if e >= now - THROUGHPUT_WINDOW_SECONDS]
    window_durations = [d for e, d in finished.durations if e >= now - DURATION_WINDOW_SECONDS]
    finished_window = sum(1 for e in finished.ended if e >= now - DURATION_WINDOW_SECONDS)
    failed_window = sum(1 for e in failed.ended if e >= now - DURATION_WINDOW_SECONDS)
    listening = [w for w in workers if name.value in w["queues"]]
    busy = [w for w in listening if w["state"] == "busy"]
    median = statistics.median(window_durations) if window_durations else None
    p95 = _percentile(window_durations, 0.95)
    attempts = finished_window + failed_window
    return {
        "name": name.value,
        "paused": name.value in paused,
        "queued": queue.count,
        "started": StartedJobRegistry(queue=queue).count,
        "failed": FailedJobRegistry(queue=queue).count,
        "scheduled": ScheduledJobRegistry(queue=queue).count,
        "deferred": DeferredJobRegistry(queue=queue).count,
        "finished": FinishedJobRegistry(queue=queue).count,
        "workers": len(listening),
        "busy_workers": len(busy),
        "utilisation": round(len(busy) / len(listening), 3) if listening else 0.0,
        "throughput_per_minute": len(recent_finished) * 60 / THROUGHPUT_WINDOW_SECONDS,
        "median_duration_seconds": None if median is None else round(median, 4),
        "p95_duration_seconds": None if p95 is None else round(p95, 4),
        "success_rate": round(finished_window / attempts, 4) if attempts else None,
        "oldest_waiting_seconds": _oldest_waiting_age(redis, queue, now),
    }


def queue_stats(redis: Redis) -> dict[str, Any]:
    """Per queue: counts by state, workers and utilisation, throughput, durations, success rate,
    depth and age of the oldest waiting job; plus the workers themselves."""
    workers = worker_report(redis)
    paused = paused_queue_names(redis)
    queues = {name.value: queue_report(redis, name, workers, paused) for name in QueueName}
    busy = sum(1 for w in workers if w["state"] == "busy")
    return {
        "queues": queues,
        "workers": workers,
        "totals": {
            "queued": sum(q["queued"] for q in queues.values()),
            "started": sum(q["started"] for q in queues.values()),
            "failed": sum(q["failed"] for q in queues.values()),
            "workers": len(workers),
            "busy_workers": busy,
            "utilisation": round(busy / len(workers), 3) if workers else 0.0,
            "throughput_per_minute": sum(q["throughput_per_minute"] for q in queues.values()),
        },
        "window_seconds": {"throughput": THROUGHPUT_WINDOW_SECONDS, "durations": DURATION_WINDOW_SECONDS},
    }


def status(redis: Redis) -> dict[str, Any]:
    """The short answer for ``/api/status``: depth, utilisation, workers."""
    stats = queue_stats(redis)
    return {
        "queue_depth": {name: q["queued"] for name, q in stats["queues"].items()},
        "paused": [name for name, q in stats["queues"].items() if q["paused"]],
        "utilisation": stats["totals"]["utilisation"],
        "workers": stats["totals"]["workers"],
        "busy_workers": stats["totals"]["busy_workers"],
    }


def job_report(redis: Redis, job_id: str) -> dict[str, Any] | None:
    """One job as RQ knows it: status, queue, attempts and its last error (type and message only)."""
    try:
        job = Job.fetch(job_id, connection=redis)
    except (NoSuchJobError, DeserializationError):
        return None
    status_value = job.get_status(refresh=False)
    error = None
    if status_value == JobStatus.FAILED or job.number_of_retries:
        result = job.latest_result()
        if result is not None and result.exc_string:
            error = result.exc_string.strip().splitlines()[-1][:500]
    return {
        "id": job.id,
        "status": status_value.value if status_value else None,
        "queue": job.origin,
        "description": job.description,
        "attempts": 1 + (job.number_of_retries or 0),
        "retries_left": job.retries_left,
        "enqueued_at": job.enqueued_at.isoformat() if job.enqueued_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "worker": job.worker_name,
        "error": error,
    }


def record_history(redis: Redis) -> dict[str, Any]:
    """Append one sample (depth and throughput per queue) to the last hour's history."""
    stats = queue_stats(redis)
    sample = {
        "t": int(time.time()),
        "depth": {n: q["queued"] for n, q in stats["queues"].items()},
        "throughput": {n: q["throughput_per_minute"] for n, q in stats["queues"].items()},
        "busy_workers": stats["totals"]["busy_workers"],
        "workers": stats["totals"]["workers"],
    }
    pipe = redis.pipeline(transaction=False)
    pipe.rpush(history_key(), json.dumps(sample))
    pipe.ltrim(history_key(), -HISTORY_MINUTES, -1)
    pipe.execute()
    return sample


def history(redis: Redis) -> list[dict[str, Any]]:
    """Samples of the last hour, oldest first (at most one a minute, written by the scheduler)."""
    cutoff = time.time() - HISTORY_MINUTES * 60
    samples = [json.loads(raw) for raw in redis.lrange(history_key(), 0, -1)]
    return [s for s in samples if s["t"] >= cutoff]
