"""Prometheus metrics, in prometheus_client's multiprocess mode: every web and worker process writes
its own files under PROMETHEUS_MULTIPROC_DIR and ``/metrics`` adds them up.

RQ forks a work horse per job. With one file per process that would be one file per job, read at
every scrape; instead a horse writes the files of the worker that forked it (``share_with_horses``).
Only one horse runs at a time per worker and the worker writes nothing while it runs, and
prometheus_client re-reads a file whenever the process identity changes (see ``_Identity``).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from snapmatch.settings import VAR_DIR


def _multiproc_dir() -> str:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(Path(VAR_DIR).resolve() / "prometheus")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path


class _Identity(str):
    """A process identity for prometheus_client: formats as the file id, but compares unequal as soon
    as the real process or the worker's job generation changes, which makes prometheus_client
    close its maps and re-read the (shared) files before the next write."""

    token: tuple[int, int]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and str.__eq__(self, other) and self.token == other.token

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


_shared_file_id: str | None = None
_generation = 0


def _identity() -> _Identity:
    ident = _Identity(_shared_file_id or str(os.getpid()))
    ident.token = (os.getpid(), _generation)
    return ident


MULTIPROC_DIR = _multiproc_dir()
values.ValueClass = values.MultiProcessValue(process_identifier=_identity)


def share_with_horses() -> None:
    """Call in a worker before it forks: its horses write this worker's files instead of their own."""
    global _shared_file_id
    _shared_file_id = str(os.getpid())


def horse_finished() -> None:
    """Call in the worker after a horse ended: re-read the shared files before writing to them."""
    global _generation
    _generation += 1


_FILE_PID = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_process_files(path: str | None = None) -> int:
    """Clean the directory at start: files of processes no longer running on this machine go (their
    counters restart from zero, which Prometheus reads as a counter reset). Returns files removed."""
    removed = 0
    for name in glob.glob(os.path.join(path or MULTIPROC_DIR, "*.db")):
        match = _FILE_PID.search(name)
        if match and not _alive(int(match.group(1))):
            try:
                os.remove(name)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def mark_dead_gauges(path: str | None = None) -> None:
    """Drop live gauges (open streams) of processes that died without saying so."""
    from prometheus_client import multiprocess

    for name in glob.glob(os.path.join(path or MULTIPROC_DIR, "gauge_live*_*.db")):
        match = _FILE_PID.search(name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path or MULTIPROC_DIR)


JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

JOBS = Counter("snapmatch_jobs", "Jobs that ended, by queue, job type and outcome", ["queue", "job_type", "outcome"])
JOB_DURATION = Histogram(
    "snapmatch_job_duration_seconds",
    "Time from a job's start to its end",
    ["queue", "job_type"],
    buckets=JOB_DURATION_BUCKETS,
)
PROVIDER_CALLS = Counter("snapmatch_provider_calls", "Billable provider calls", ["provider", "operation"])
PROVIDER_THROTTLES = Counter(
    "snapmatch_provider_throttles", "Provider answers that asked us to slow down", ["provider", "operation"]
)
PROVIDER_COST = Counter("snapmatch_provider_cost_usd", "Estimated provider cost in USD", ["provider"])
LIMITER_WAITS = Counter(
    "snapmatch_limiter_waits", "Times a provider call had to wait for the shared limiter", ["provider", "reason"]
)
LIMITER_WAIT_SECONDS = Histogram(
    "snapmatch_limiter_wait_seconds",
    "Seconds spent waiting for the shared limiter",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
UPLOADS = Counter("snapmatch_uploads", "Uploaded files by outcome", ["outcome"])
PROGRESS_STREAMS_OPEN = Gauge(
    "snapmatch_progress_streams_open", "Progress streams (SSE) open right now", multiprocess_mode="livesum"
)
