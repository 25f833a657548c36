"""What the scheduler runs, how often, and the record of each schedule's last run (shown on /admin).

Each scheduled function is wrapped by ``recorded``: it writes when it started, when it ended, its
outcome and a short result to one Redis hash, so any process can tell whether maintenance runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import utcparse

from jobs import monitor
from snapmatch.progress import stream_key
from snapmatch.redis_client import get_redis, key
from snapmatch.settings import VAR_DIR, get_settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
DAY = 24 * 3600
_ENDED = {JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.CANCELED.value, JobStatus.STOPPED.value}


def runs_key() -> str:
    return key("schedule-runs")


def recorded(name: str) -> Callable[[F], F]:
    """Record each run of the decorated scheduled function (outcome ``ok`` or ``failed``)."""

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.time()
            entry: dict[str, Any] = {"started_at": started}
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                entry.update(outcome="failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
                raise
            else:
                entry.update(outcome="ok", result=result)
                return result
            finally:
                entry["finished_at"] = time.time()
                entry["duration_seconds"] = round(entry["finished_at"] - started, 4)
                get_redis().hset(runs_key(), name, json.dumps(entry, default=str))

        return wrapped  # type: ignore[return-value]

    return decorate


def last_runs(redis: Redis) -> dict[str, dict[str, Any]]:
    """The last run of every schedule, by name, with its interval."""
    raw = {k.decode(): json.loads(v) for k, v in redis.hgetall(runs_key()).items()}
    return {s.name: {"every_seconds": s.interval(), **raw.get(s.name, {"outcome": "never_run"})} for s in SCHEDULES}


# ---- the clean-up jobs --------------------------------------------------------------------------


def temp_dirs() -> list[Path]:
    """Directories of temporary files: the upload spool of this machine's web processes."""
    return [Path(VAR_DIR).resolve() / "tmp"]


@recorded("remove_old_temp_files")
def remove_old_temp_files() -> dict[str, int]:
    """Delete temporary files older than TEMP_FILE_MAX_AGE_DAYS."""
    cutoff = time.time() - get_settings().TEMP_FILE_MAX_AGE_DAYS * DAY
    removed = 0
    for directory in temp_dirs():
        if not directory.is_dir():
            continue
        for path in directory.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another process removed it first
    return {"files_removed": removed}


def _scan_batches(redis: Redis, pattern: str, batch: int = 500):  # type: ignore[no-untyped-def]
    chunk: list[str] = []
    for raw in redis.scan_iter(match=pattern, count=1000):
        chunk.append(raw.decode())
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@recorded("remove_old_job_records")
def remove_old_job_records() -> dict[str, int]:
    """Delete ended RQ job records (and their results) and progress streams older than
    JOB_RECORD_MAX_AGE_DAYS: records kept without a TTL would otherwise stay for ever."""
    redis = get_redis()
    cutoff = time.time() - get_settings().JOB_RECORD_MAX_AGE_DAYS * DAY
    jobs_removed = 0
    prefix = Job.redis_job_namespace_prefix
    for keys in _scan_batches(redis, prefix + "*"):
        keys = [k for k in keys if k.count(":") == 2]  # rq:job:<id>, not rq:job:<id>:dependents
        pipe = redis.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, "status", "ended_at")
        old = []
        for k, (status, ended) in zip(keys, pipe.execute(), strict=True):
            if status and status.decode() in _ENDED and ended and utcparse(ended.decode()).timestamp() < cutoff:
                old.append(k.removeprefix(prefix))
        if old:
            pipe = redis.pipeline(transaction=False)
            for job_id in old:
                pipe.unlink(prefix + job_id, Result.get_key(job_id))
            pipe.execute()
            jobs_removed += len(old)
    streams_removed = 0
    cutoff_ms = int(cutoff * 1000)
    for keys in _scan_batches(redis, stream_key("*")):
        pipe = redis.pipeline(transaction=False)
        for k in keys:
            pipe.xrevrange(k, count=1)
        for k, last in zip(keys, pipe.execute(), strict=True):
            last_ms = int(last[0][0].decode().split("-")[0]) if last else 0
            if last_ms < cutoff_ms:
                redis.unlink(k)
                streams_removed += 1
    return {"job_records_removed": jobs_removed, "progress_streams_removed": streams_removed}


@recorded("record_queue_history")
def record_queue_history() -> dict[str, Any]:
    """One sample a minute of queue depth and throughput, for the admin page's chart."""
    return monitor.record_history(get_redis())


# ---- the schedule table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    name: str
    func: Callable[..., Any]
    interval: Callable[[], int]
    job_timeout: int


def _sweep_interval() -> int:
    return get_settings().SWEEP_INTERVAL_SECONDS


def _schedules() -> list[Schedule]:
    from jobs.maintenance import purge_orphans_of_active_events, sweep

    return [
        Schedule("sweep", sweep, _sweep_interval, 300),
        Schedule("record_queue_history", record_queue_history, lambda: 60, 60),
        # Provider faces left by a crash cost storage, not correctness (matching ignores them): hourly.
        Schedule("purge_orphans_of_active_events", purge_orphans_of_active_events, lambda: 3600, 1800),
        Schedule("remove_old_temp_files", remove_old_temp_files, lambda: 3600, 1800),
        Schedule("remove_old_job_records", remove_old_job_records, lambda: 3600, 1800),
        *_analysis_schedules(),
    ]


def _analysis_schedules() -> list[Schedule]:
    """Photo analysis (only when GEMINI_API_KEY is set): the sweeper for lost analysis jobs, and the
    batch-mode submitter and poller (an event may use batch mode even when ANALYSIS_MODE is immediate)."""
    settings = get_settings()
    if not settings.GEMINI_API_KEY:
        return []
    from jobs.analysis import poll_analysis_batches, submit_analysis_batches, sweep_analyses

    poll = max(1, settings.ANALYSIS_BATCH_POLL_SECONDS)
    return [
        Schedule("sweep_analyses", sweep_analyses, _sweep_interval, 300),
        Schedule("submit_analysis_batches", submit_analysis_batches, lambda: poll, 600),
        Schedule("poll_analysis_batches", poll_analysis_batches, lambda: poll, 600),
    ]


class _LazySchedules:
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(_schedules())


SCHEDULES = _LazySchedules()
