"""Quiet logs for routine maintenance: the sweeper runs every 10 s, and RQ's four INFO lines per
job would bury the photo and selfie jobs an operator is watching. Only INFO lines about jobs on the
maintenance queue are hidden; their warnings and errors, and what the sweeper reports when it
re-enqueues something, still show.
"""

from __future__ import annotations

import logging

from jobs.queues import QueueName

_MAINTENANCE = QueueName.MAINTENANCE.value
_MAINTENANCE_FUNCTIONS = ("jobs.maintenance.", "jobs.schedules.")


class QuietMaintenanceJobs(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._job_ids: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = [str(a) for a in record.args] if isinstance(record.args, tuple) else []
        message = record.getMessage() if not args else ""
        # RQ: "Worker %s: %s: %s (%s)" (dequeued, "Job OK") with the queue name second, job id last.
        if len(args) == 4 and str(record.msg).startswith("Worker %s: %s:") and _MAINTENANCE in args[1]:
            if len(self._job_ids) > 10_000:
                self._job_ids.clear()
            self._job_ids.add(args[3])
            return False
        if any(a in self._job_ids or a.startswith(_MAINTENANCE_FUNCTIONS) for a in args):
            return False
        # rq.cron: "Enqueued job sweep to queue maintenance" (formatted before logging).
        return not (message.startswith("Enqueued job ") and message.endswith(f" to queue {_MAINTENANCE}"))


def quiet_maintenance_logs() -> None:
    """Install the filter on the handlers of the root logger (call after ``logging.basicConfig``)."""
    quiet = QuietMaintenanceJobs()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
