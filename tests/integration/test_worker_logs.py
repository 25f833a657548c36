"""The routine sweep does not flood the worker's log; photo jobs and real problems still show."""

from __future__ import annotations

import logging

import pytest
import redis as redis_lib
from rq import SimpleWorker

from jobs import maintenance
from jobs.logs import QuietMaintenanceJobs
from jobs.queues import QueueName, get_queue


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_maintenance_jobs_are_quiet_and_photo_jobs_are_not(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    connection = redis_lib.Redis.from_url(redis_url)
    handler = _Collect()
    handler.addFilter(QuietMaintenanceJobs())
    rq_logger = logging.getLogger("rq")
    previous_level = rq_logger.level
    rq_logger.addHandler(handler)
    rq_logger.setLevel(logging.INFO)
    try:
        sweep = get_queue(QueueName.MAINTENANCE, connection).enqueue(maintenance.sweep)
        other = get_queue(QueueName.PHOTOS, connection).enqueue(len, [1, 2, 3])
        broken = get_queue(QueueName.MAINTENANCE, connection).enqueue(maintenance.sweep, "an unexpected argument")
        logging.getLogger("rq.cron").info("Enqueued job sweep to queue maintenance")
        worker = SimpleWorker(
            [get_queue(q, connection) for q in (QueueName.PHOTOS, QueueName.MAINTENANCE)], connection=connection
        )
        worker.work(burst=True, with_scheduler=False)
    finally:
        rq_logger.removeHandler(handler)
        rq_logger.setLevel(previous_level)

    info = "\n".join(line for line in handler.lines if line.startswith("INFO"))
    for hidden in (sweep.id, broken.id, "jobs.maintenance.", "maintenance: Job OK", "Enqueued job sweep"):
        assert hidden not in info, hidden
    assert other.id in info and "Job OK" in info  # the photos queue's job is logged as before
    errors = "\n".join(line for line in handler.lines if line.startswith("ERROR"))
    assert broken.id in errors  # a maintenance job that fails is not hidden
