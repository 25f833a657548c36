"""Worker entry point (``python -m jobs.worker``): loads the face engine once, then forks a work
horse per job that inherits it. Listens to selfies, photos, maintenance in that priority order.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from rq import Worker

from jobs.logs import quiet_maintenance_logs
from jobs.queues import WORKER_QUEUES, get_queue
from jobs.runtime import get_runtime
from jobs.worker_liveness import LivenessBeacon
from snapmatch.redis_client import get_redis


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
    worker = Worker([get_queue(q, redis) for q in WORKER_QUEUES], connection=redis, name=name)
    worker.log_result_lifespan = False  # "result is kept for 500 seconds" after every job says nothing
    beacon = LivenessBeacon(redis, worker.name)
    beacon.start()
    try:
        worker.work(burst=args.burst, with_scheduler=not args.no_scheduler)
    finally:
        beacon.stop()


if __name__ == "__main__":
    main()
