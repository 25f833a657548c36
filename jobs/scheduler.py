"""Scheduler entry point (``python -m jobs.scheduler``): RQ's CronScheduler running the sweeper,
restarted in-process when Redis goes away for a moment instead of dying.
"""

from __future__ import annotations

import logging
import time

from redis import RedisError
from rq.cron import CronScheduler

from jobs.logs import quiet_maintenance_logs
from jobs.maintenance import purge_orphans_of_active_events, sweep
from jobs.queues import QueueName
from snapmatch.redis_client import get_redis
from snapmatch.settings import get_settings

SWEEP_INTERVAL_SECONDS = 10
# Provider faces left by a crash cost storage, not correctness (matching ignores them): hourly is enough.
ORPHAN_PURGE_INTERVAL_SECONDS = 3600
log = logging.getLogger("snapmatch.scheduler")


def _register_analysis_jobs(scheduler: CronScheduler) -> None:
    """Photo analysis (only when GEMINI_API_KEY is set): the sweeper for lost analysis jobs, and the batch-mode
    submitter and poller (an event may use batch mode even when ANALYSIS_MODE is immediate)."""
    from jobs import analysis

    settings = get_settings()
    if not settings.GEMINI_API_KEY:
        return
    queue = QueueName.MAINTENANCE.value
    scheduler.register(analysis.sweep_analyses, queue_name=queue, interval=SWEEP_INTERVAL_SECONDS, job_timeout=300)
    interval = max(1, settings.ANALYSIS_BATCH_POLL_SECONDS)
    scheduler.register(analysis.submit_analysis_batches, queue_name=queue, interval=interval, job_timeout=600)
    scheduler.register(analysis.poll_analysis_batches, queue_name=queue, interval=interval, job_timeout=600)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_maintenance_logs()
    while True:
        scheduler = CronScheduler(connection=get_redis())
        scheduler.register(
            sweep, queue_name=QueueName.MAINTENANCE.value, interval=SWEEP_INTERVAL_SECONDS, job_timeout=300
        )
        scheduler.register(
            purge_orphans_of_active_events,
            queue_name=QueueName.MAINTENANCE.value,
            interval=ORPHAN_PURGE_INTERVAL_SECONDS,
            job_timeout=1800,
        )
        _register_analysis_jobs(scheduler)
        try:
            scheduler.start()
            return
        except RedisError as exc:
            log.warning("Redis unavailable (%s); retrying in 2 s", exc)
            time.sleep(2)


if __name__ == "__main__":
    main()
