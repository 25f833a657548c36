"""RQ's overhead per photo job, as a share of the job's time, with a real Redis and a real worker.

Set-up: a temporary SQLite database (migrated), file storage and var dir; Redis at REDIS_URL
(default redis://127.0.0.1:6379/12; only that DB is flushed, before and after). 30 real photos
(the bench's ordinary set, its mirrored copies, the 12 MP crowds and the 24 MP crowd) go through
the web app's own domain calls (``accounts.create_user``, ``events.create_event``,
``ingest.ensure_batch`` + ``ingest.ingest_file``, ``jobs.queues.enqueue_photos``), all queued
before the worker starts. Then ``python -m jobs.worker --burst --name bench-worker`` (the
Procfile's worker, burst mode) processes them back to back and exits.

What RQ 3 records (rq/worker/base.py): in the work horse, ``perform_job`` sets
``job.started_at = now()`` right before ``job.perform()`` (the job function) and
``job.ended_at = now()`` right after it returns; both are saved on the job hash. So

* job time            = ended_at - started_at: our job function (``jobs.photo.process_photo_job``),
* RQ overhead per job = started_at(job k+1) - ended_at(job k) while a backlog is waiting: the
  worker's time between two job functions: saving job k's result and registries, reaping its work
  horse, heartbeats, dequeuing job k+1, creating its execution, forking its horse, and marking it
  started. (Equivalently: busy window from the first start to the last end, minus the sum of job
  times, divided by n-1 gaps.)
* share               = overhead / (overhead + job time), means over the jobs.

For reference it also prints what the job function spends outside ``process_photo``'s timed
section (photos.started_at .. photos.finished_at): the job wrapper and the row loading, ours, not RQ's.

Usage: python bench/rq_overhead.py [--photos 30]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"


def photo_files(n: int) -> list[tuple[str, bytes]]:
    """n distinct real photos: ordinary set, its mirrored copies, then the crowds first."""
    import cv2
    import datasets
    import numpy as np

    sets = datasets.build()
    crowds = [(p.name, p.read_bytes()) for s in ("crowd12", "crowd24") for p in sorted(sets[s].iterdir())]
    ordinary = [(p.name, p.read_bytes()) for p in sorted(sets["ordinary"].iterdir())]
    mirrored = []
    for name, data in ordinary:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        ok, buf = cv2.imencode(".jpg", bgr[:, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        mirrored.append((f"mirrored_{Path(name).stem}.jpg", buf.tobytes()))
    files = crowds + ordinary + mirrored
    while len(files) < n:  # more than the sets hold: re-encoded copies (distinct bytes)
        name, data = files[len(files) % len(ordinary)]
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80 + len(files) % 15])
        files.append((f"copy{len(files)}_{name}", buf.tobytes()))
    return files[:n]


# The --preload-jobs experiment: the same worker entry point, with the job modules imported first.
PRELOAD = "import runpy, jobs.photo, jobs.selfie; runpy.run_module('jobs.worker', run_name='__main__')"


def _aware(dt):  # type: ignore[no-untyped-def]
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument(
        "--preload-jobs",
        action="store_true",
        help="experiment: import jobs.photo/jobs.selfie in the worker before it forks work horses",
    )
    args = parser.parse_args()

    import datasets
    from benchenv import isolated_environment

    try:
        files = photo_files(args.photos)
    except datasets.DataUnavailable as exc:
        print(f"rq overhead: SKIPPED: {exc}", file=sys.stderr)
        return 2

    tmp, env = isolated_environment("snapmatch-rq-bench-", REDIS_URL, FACE_ENGINE="local")
    os.environ.pop("GEMINI_API_KEY", None)

    import redis as redis_lib
    from rq.job import Job
    from sqlalchemy import select

    from jobs.queues import enqueue_photos
    from snapmatch import accounts, db, events
    from snapmatch.ingest import ensure_batch, ingest_file
    from snapmatch.schema import photos
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    conn = redis_lib.Redis.from_url(REDIS_URL)
    worker = None
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"rq overhead: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2
    try:
        conn.flushdb()
        settings = get_settings()
        db.migrate()
        user = accounts.create_user("bench-photographer@example.com", "photographer", "bench-password-1")
        event = events.create_event(user, "RQ overhead bench")
        batch_id = ensure_batch(event.id, user.id, None)
        storage = open_storage(settings.STORAGE_URL)
        upload_tmp = tmp / "uploads"
        upload_tmp.mkdir()
        ids = []
        for name, data in files:
            result = ingest_file(
                event_id=event.id,
                batch_id=batch_id,
                stream=io.BytesIO(data),
                filename=name,
                storage=storage,
                settings=settings,
                tmp_dir=str(upload_tmp),
            )
            if result.status != "queued":
                raise RuntimeError(f"{name}: {result.status} {result.error}")
            ids.append(result.photo_id)
        job_ids = enqueue_photos(conn, [(pid, 0) for pid in ids])
        print(
            f"queued {len(job_ids)} photo jobs ({sum(len(d) for _, d in files) / 1e6:.0f} MB of real photos); "
            f"running `python -m jobs.worker --burst --name bench-worker`; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ...",
            flush=True,
        )

        log_path = tmp / "worker.log"
        with open(log_path, "wb") as log:
            t0 = time.monotonic()
            command = [sys.executable, "-m", "jobs.worker"]
            if args.preload_jobs:
                command = [sys.executable, "-c", PRELOAD]
            worker = subprocess.Popen(
                [*command, "--burst", "--name", "bench-worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            worker.wait(timeout=600)
            wall = time.monotonic() - t0
        if worker.returncode != 0:
            print(log_path.read_text()[-3000:])
            raise RuntimeError(f"worker exited with {worker.returncode}")

        jobs = Job.fetch_many(job_ids, connection=conn)
        missing = [jid for jid, j in zip(job_ids, jobs, strict=True) if j is None or j.get_status() != "finished"]
        if missing:
            statuses = {
                jid: (j.get_status() if j else "gone") for jid, j in zip(job_ids, jobs, strict=True) if jid in missing
            }
            print(log_path.read_text()[-3000:])
            raise RuntimeError(f"jobs not finished: {statuses}")
        jobs.sort(key=lambda j: j.started_at)
        job_times = [(j.ended_at - j.started_at).total_seconds() for j in jobs]
        gaps = [(b.started_at - a.ended_at).total_seconds() for a, b in zip(jobs, jobs[1:], strict=False)]
        busy = (jobs[-1].ended_at - jobs[0].started_at).total_seconds()

        with db.connection() as c:
            rows = {r.id: r for r in c.execute(select(photos).where(photos.c.id.in_(ids)))}
        not_done = [pid for pid, r in rows.items() if r.status != "done"]
        in_fn = {pid: (r.finished_at - r.started_at).total_seconds() for pid, r in rows.items()}
        [jt - in_fn[j.args[0]] for j, jt in zip(jobs, job_times, strict=True)]
        before = [(_aware(rows[j.args[0]].started_at) - _aware(j.started_at)).total_seconds() for j in jobs]
        after = [(_aware(j.ended_at) - _aware(rows[j.args[0]].finished_at)).total_seconds() for j in jobs]
        faces = sum(r.face_count or 0 for r in rows.values())

        mean_job = statistics.mean(job_times)
        mean_gap = statistics.mean(gaps)
        share = mean_gap / (mean_gap + mean_job)
        print(
            f"worker: {len(jobs)} jobs done in {wall:.1f} s wall (incl. start-up and model load), "
            f"busy {busy:.1f} s from first job start to last job end; {faces} faces; "
            f"photos not done: {len(not_done)}"
        )
        print(
            f"job time (RQ ended_at - started_at): mean {mean_job * 1000:.0f} ms, "
            f"median {statistics.median(job_times) * 1000:.0f} ms, min {min(job_times) * 1000:.0f} ms, "
            f"max {max(job_times) * 1000:.0f} ms"
        )
        print(
            f"gap between jobs (RQ's own work): mean {mean_gap * 1000:.1f} ms, "
            f"median {statistics.median(gaps) * 1000:.1f} ms, "
            f"max {max(gaps) * 1000:.1f} ms; check: busy - sum(job) = {(busy - sum(job_times)) * 1000:.0f} ms "
            f"over {len(gaps)} gaps"
        )
        print(
            f"job set-up inside the work horse, counted by RQ as job time (job module import, runtime, DB "
            f"connection, row load; ours, not RQ's): mean {statistics.mean(before) * 1000:.1f} ms from job start to "
            f"photos.started_at; after photos.finished_at: {statistics.mean(after) * 1000:.1f} ms"
        )
        setup = statistics.mean(before)
        print(
            f"worker overhead per job incl. that set-up: {(mean_gap + setup) * 1000:.0f} ms = "
            f"{(mean_gap + setup) / (mean_gap + mean_job) * 100:.1f} % of job time"
            f"{' (worker run with jobs.photo preloaded: --preload-jobs)' if args.preload_jobs else ''}"
        )
        print(
            f"rq overhead per job: {mean_gap * 1000:.0f} ms = {share * 100:.1f} % of job time (n={len(jobs)}) "
            f"[goal <= 5 %: {'met' if share <= 0.05 else 'NOT met'}]"
        )
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        with contextlib.suppress(redis_lib.RedisError):
            conn.flushdb()
        db.dispose_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
