"""Upload acknowledgement time: 100 distinct ~3 MB JPEGs from one client over loopback.

Starts the Procfile's web process (gunicorn.conf.py: 2 gevent workers) on a free port with
a temporary SQLite database (migrated), file storage, var dir and Redis at REDIS_URL (default
redis://127.0.0.1:6379/12; only that DB is flushed, before and after). A photographer and an API
token are made with the domain functions the Flask CLI uses; the event is created over HTTP
(POST /api/events). Then one ``requests.Session`` POSTs each file on its own request
(POST /api/events/<id>/photos, multipart field ``files``), sequentially, and waits for each 202.
No worker runs: the jobs just queue. Acknowledgement = the request's round trip (the server has
streamed the file to disk, validated it, hashed it, stored it, inserted the row and enqueued the job).

Usage: python bench/upload_ack.py [--files 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
WIDTH, HEIGHT = 2400, 1800
NOISE, QUALITY = 78, 95  # tuned so each JPEG is ~3 MB


def make_jpegs(n: int) -> list[bytes]:
    """n distinct photo-sized JPEGs (~3 MB each): gradient + noise, the noise shifted per file."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([x * 255 // WIDTH, y * 255 // HEIGHT, (x + y) % 256], axis=-1).astype(np.int16)
    noise = rng.integers(0, NOISE, size=(HEIGHT, WIDTH, 3), dtype=np.int16)
    out = []
    for i in range(n):
        img = np.clip(base + np.roll(noise, (i * 7, i * 37), axis=(0, 1)), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        assert ok
        out.append(buf.tobytes())
    assert len({hash(b) for b in out}) == n
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--passes", type=int, default=3, help="passes of all files, each into a new event (median)")
    args = parser.parse_args()

    import redis as redis_lib
    import requests

    conn = redis_lib.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"upload ack: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2

    from benchenv import isolated_environment, start_gunicorn

    tmp, env = isolated_environment("snapmatch-upload-bench-", REDIS_URL)
    from snapmatch import accounts, db

    server = None
    log = None
    try:
        conn.flushdb()
        db.migrate()
        accounts.create_user("bench-uploader@example.com", "photographer", "bench-password-1")
        token = accounts.create_token("bench-uploader@example.com")
        db.dispose_all()

        files = make_jpegs(args.files)
        server, base = start_gunicorn(env, tmp / "gunicorn.log")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mb = sum(len(d) for d in files) / 1e6
        print(
            f"{len(files)} distinct JPEGs of {WIDTH}x{HEIGHT} ({mb / len(files):.2f} MB each, {mb:.0f} MB in all), "
            f"one POST per file, sequential, one requests.Session, "
            f"gunicorn as in gunicorn.conf.py (2 gevent workers) on loopback; "
            f"{args.passes} passes, each into a new event; load average before: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        totals = []
        for n_pass in range(args.passes):
            r = session.post(f"{base}/api/events", json={"name": f"upload bench {n_pass}"}, timeout=30)
            r.raise_for_status()
            event_id = r.json()["id"]
            times = []
            statuses: dict[str, int] = {}
            t_all = time.perf_counter()
            for i, data in enumerate(files):
                t0 = time.perf_counter()
                r = session.post(
                    f"{base}/api/events/{event_id}/photos",
                    files={"files": (f"IMG_{i:04d}.jpg", data, "image/jpeg")},
                    timeout=60,
                )
                times.append(time.perf_counter() - t0)
                if r.status_code != 202:
                    raise RuntimeError(f"file {i}: HTTP {r.status_code} {r.text[:300]}")
                for p in r.json()["photos"]:
                    statuses[p["status"]] = statuses.get(p["status"], 0) + 1
            total = time.perf_counter() - t_all
            totals.append(total)
            times_ms = sorted(t * 1000 for t in times)
            p95 = times_ms[max(0, round(0.95 * len(times_ms)) - 1)]
            print(
                f"pass {n_pass + 1}: total {total:.2f} s; per file p50 {statistics.median(times_ms):.1f} ms, "
                f"p95 {p95:.1f} ms, max {times_ms[-1]:.1f} ms, first {times[0] * 1000:.1f} ms; "
                f"{mb / total:.0f} MB/s; statuses {statuses}"
            )
        queued = conn.llen("rq:queue:photos")
        median = statistics.median(totals)
        print(
            f"jobs waiting in rq:queue:photos: {queued}; load average after: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(
            f"upload ack total for {len(files)} x {mb / len(files):.1f} MB: {median:.2f} s (median of {len(totals)} "
            f"passes; best {min(totals):.2f} s) [goal <= 3 s for 100: "
            f"{'met' if median <= 3.0 and len(files) >= 100 else 'NOT met'}]"
        )
        return 0
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # gunicorn's own group (start_new_session)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        with contextlib.suppress(redis_lib.RedisError):
            conn.flushdb()
        if log is not None:
            log.close()
        db.dispose_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
