"""Worker entry point (``python -m jobs.worker``): loads the face engine once, then forks a work
horse per job that inherits it. Listens to selfies, photos, maintenance in that priority order.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from datetime import UTC, datetime

from rq import Worker

from jobs.logs import quiet_maintenance_logs
from jobs.queues import PAUSE_POLL_SECONDS, WORKER_QUEUES, PausableQueue
from jobs.runtime import get_runtime
from jobs.worker_liveness import LivenessBeacon
from snapmatch import metrics
from snapmatch.redis_client import get_redis


def _seconds_since(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


class SnapmatchWorker(Worker):
    """RQ's forking worker that skips paused queues (``PausableQueue``) and counts every job's
    outcome and duration in the Prometheus files it shares with its work horses."""

    queue_class = PausableQueue

    @property
    def dequeue_timeout(self) -> int:
        return PAUSE_POLL_SECONDS

    def execute_job(self, job, queue):  # type: ignore[no-untyped-def]
        try:
            return super().execute_job(job, queue)
        finally:
            metrics.horse_finished()

    def _observe(self, job, outcome: str) -> None:  # type: ignore[no-untyped-def]
        if not self.is_horse:
            # The worker itself records a horse that died (timeout, OOM): re-read the files the
            # horse wrote before writing to them.
            metrics.horse_finished()
        job_type = (job.func_name or "unknown").rsplit(".", 1)[-1]
        metrics.JOBS.labels(job.origin, job_type, outcome).inc()
        if job.started_at is not None:
            metrics.JOB_DURATION.labels(job.origin, job_type).observe(_seconds_since(job.started_at))

    def handle_job_success(self, job, queue, started_job_registry, execution):  # type: ignore[no-untyped-def]
        super().handle_job_success(job, queue, started_job_registry, execution)
        self._observe(job, "finished")

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):  # type: ignore[no-untyped-def]
        outcome = "retried" if job.should_retry else "failed"
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        self._observe(job, outcome)


def _warm_lazy_imports() -> None:
    """Import here what every work horse would otherwise import again on its first use in each job
    (~25 ms per job, seen with PYTHONPROFILEIMPORTTIME=1): the database dialect and driver, loaded
    on the first connection, and Pillow's format plugins. The connection is closed again: each work
    horse opens its own, through the engine it inherits."""
    from PIL import Image
    from sqlalchemy import text

    from snapmatch import db

    with db.connection() as conn:
        conn.execute(text("SELECT 1"))
    db.close_connections()
    Image.preinit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Snapmatch worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None, help="worker name (default host.pid)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run RQ's scheduler for retries")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_maintenance_logs()

    runtime = get_runtime()  # loads models now, before any fork
    if runtime.settings.WORKER_NICE > 0:
        os.nice(runtime.settings.WORKER_NICE)
    # Import the job modules (and SQLAlchemy behind them) once here too: a forked work horse would
    # otherwise import them for every job (~110 ms each, measured in bench/rq_overhead.py).
    import jobs.analysis
    import jobs.maintenance
    import jobs.photo
    import jobs.selfie  # noqa: F401

    if runtime.settings.GEMINI_API_KEY:
        jobs.analysis.get_analyzer().warm()  # once here, inherited by every work horse

    _warm_lazy_imports()

    redis = get_redis(runtime.settings.REDIS_URL)
    name = args.name or f"{socket.gethostname()}.{os.getpid()}"
    metrics.remove_dead_process_files()
    metrics.share_with_horses()
    worker = SnapmatchWorker([q.value for q in WORKER_QUEUES], connection=redis, name=name)
    worker.log_result_lifespan = False  # "result is kept for 500 seconds" after every job says nothing
    beacon = LivenessBeacon(redis, worker.name)
    beacon.start()
    try:
        worker.work(burst=args.burst, with_scheduler=not args.no_scheduler)
    finally:
        beacon.stop()


if __name__ == "__main__":
    main()
