"""Scheduler entry point (``python -m jobs.scheduler``): RQ's CronScheduler running every schedule of
``jobs.schedules`` on the maintenance queue, restarted in-process when Redis goes away for a moment.
"""

from __future__ import annotations

import logging
import time

from redis import RedisError
from rq.cron import CronScheduler

from jobs.logs import quiet_maintenance_logs
from jobs.queues import QueueName
from jobs.schedules import SCHEDULES
from snapmatch.redis_client import get_redis

log = logging.getLogger("snapmatch.scheduler")


def build_scheduler() -> CronScheduler:
    scheduler = CronScheduler(connection=get_redis())
    for schedule in SCHEDULES:
        scheduler.register(
            schedule.func,
            queue_name=QueueName.MAINTENANCE.value,
            interval=schedule.interval(),
            job_timeout=schedule.job_timeout,
            name=schedule.name,
        )
    return scheduler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_maintenance_logs()
    while True:
        try:
            build_scheduler().start()
            return
        except RedisError as exc:
            log.warning("Redis unavailable (%s); retrying in 2 s", exc)
            time.sleep(2)


if __name__ == "__main__":
    main()
