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

SWEEP_INTERVAL_SECONDS = 10
# Provider faces left by a crash cost storage, not correctness (matching ignores them): hourly is enough.
ORPHAN_PURGE_INTERVAL_SECONDS = 3600
log = logging.getLogger("snapmatch.scheduler")


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
        try:
            scheduler.start()
            return
        except RedisError as exc:
            log.warning("Redis unavailable (%s); retrying in 2 s", exc)
            time.sleep(2)


if __name__ == "__main__":
    main()
