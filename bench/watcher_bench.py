"""The watcher's upload speed: time for 100 × 3 MB photos in a folder to be acknowledged by the server
with ``snapmatch upload DIR -c 8``, and the watcher's CPU seconds per 100 photos.

Starts the Procfile's web process (gunicorn.conf.py: 2 gevent workers) on a free port with a
temporary SQLite database, file storage and Redis at REDIS_URL (default redis://127.0.0.1:6379/12;
only that DB is flushed, before and after), as ``upload_ack.py`` does, with the same 3 MB JPEGs and
``UPLOAD_RATE_LIMIT`` raised out of the way. No
worker runs: jobs just queue. Each pass writes the photos into a new folder (mtime a minute old: a
card copied earlier), runs the real command as a subprocess into a new event with a fresh state
directory, and reads its ``--json`` summary.

Before each pass, the same photos are also sent the way ``upload_ack.py`` sends them (one POST per
file, in turn) into another event: the spine's figure under the same load, for comparison on a
shared machine. Printed per pass: wall time of the whole command (interpreter start, imports, scan, hashing, hash
check, uploads, final batch poll), ``to last ack`` (from the watcher's start to the last 202, as
the summary reports it), and the command's CPU seconds (user + sys, from ``os.wait4``).

Usage: python bench/watcher_bench.py [--files 100] [-c 8] [--files-per-request 1 2 4] [--passes 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from upload_ack import REDIS_URL, make_jpegs  # noqa: E402 - after the path set-up


def run_watcher(env: dict[str, str], folder: Path, base: str, event_id: int, token: str, args: list[str]) -> dict:
    """One ``snapmatch upload`` run: its summary plus wall and CPU seconds."""
    command = [sys.executable, "-m", "snapmatch.watcher", "upload", str(folder), "--event", str(event_id),
               "--server", base, "--json", *args]  # fmt: skip
    out_path = folder.parent / f"{folder.name}.jsonl"
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env={**env, "SNAPMATCH_TOKEN": token}, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [json.loads(line) for line in out_path.read_text().splitlines() if line]
    summary = next(line for line in lines if line["type"] == "summary")
    if proc.returncode != 0 or summary["sent"] != summary["seen"]:
        raise RuntimeError(f"watcher exit {proc.returncode}: {summary}")
    return {**summary, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def sequential_upload(session, base: str, photos: list[bytes], name: str) -> float:  # type: ignore[no-untyped-def]
    """The spine's figure under the same load: one POST per file, in turn, on one session."""
    event_id = session.post(f"{base}/api/events", json={"name": name}).json()["id"]
    t0 = time.perf_counter()
    for i, data in enumerate(photos):
        r = session.post(f"{base}/api/events/{event_id}/photos", files={"files": (f"R_{i:04d}.jpg", data)}, timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"reference upload: HTTP {r.status_code}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--files-per-request", type=int, nargs="+", default=[4])
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    import redis as redis_lib
    import requests

    conn = redis_lib.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"watcher bench: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2

    from benchenv import isolated_environment, start_gunicorn

    # The server's upload rate limit (100 requests/minute by default) is not what this measures.
    tmp, env = isolated_environment("snapmatch-watcher-bench-", REDIS_URL, UPLOAD_RATE_LIMIT="1000000/minute")
    from snapmatch import accounts, db

    server = None
    try:
        conn.flushdb()
        db.migrate()
        accounts.create_user("bench-watcher@example.com", "photographer", "bench-password-1")
        token = accounts.create_token("bench-watcher@example.com")
        db.dispose_all()
        photos = make_jpegs(args.files)
        mb = sum(len(p) for p in photos) / 1e6
        server, base = start_gunicorn(env, tmp / "gunicorn.log")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        print(
            f"{len(photos)} distinct JPEGs ({mb / len(photos):.2f} MB each, {mb:.0f} MB in all); `snapmatch upload DIR "
            f"-c {args.concurrency}` as a subprocess; gunicorn 2 workers x 8 threads on loopback, no worker; "
            f"{args.passes} passes per setting, each into a new event and folder with a fresh state directory; "
            f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        results: dict[int, list[dict]] = {}
        reference: list[float] = []
        n = 0
        for per_request in args.files_per_request:
            for _ in range(args.passes):
                n += 1
                reference.append(sequential_upload(session, base, photos, f"reference {n}"))
                print(f"reference (upload_ack.py's client: one POST per file, sequential): {reference[-1]:.2f} s")
                folder = tmp / f"card{n}"
                folder.mkdir()
                old = time.time() - 60
                for i, data in enumerate(photos):
                    path = folder / f"IMG_{i:04d}.jpg"
                    path.write_bytes(data)
                    os.utime(path, (old, old))
                event_id = session.post(f"{base}/api/events", json={"name": f"watcher bench {n}"}).json()["id"]
                run_env = {**env, "SNAPMATCH_STATE_DIR": str(tmp / f"state{n}"), "SNAPMATCH_CONFIG_DIR": str(tmp)}
                extra = ["-c", str(args.concurrency), "--files-per-request", str(per_request)]
                r = run_watcher(run_env, folder, base, event_id, token, extra)
                results.setdefault(per_request, []).append(r)
                print(
                    f"files/request {per_request}: wall {r['wall']:.2f} s, ack {r['seconds_to_last_ack']:.2f} s,"
                    f" end {r['seconds']:.2f} s, watcher CPU {r['cpu']:.2f} s, {r['requests']} upload requests"
                )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"reference, same server and load: {statistics.median(reference):.2f} s for the same photos "
            f"(median of {len(reference)}, one before each watcher pass)"
        )
        for per_request, runs in results.items():
            wall = statistics.median(r["wall"] for r in runs)
            ack = statistics.median(r["seconds_to_last_ack"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs) * 100 / args.files
            print(
                f"watcher -c {args.concurrency}, {per_request} files/request: {args.files} x {mb / args.files:.1f} MB "
                f"acknowledged in {ack:.2f} s from start ({wall:.2f} s for the whole command), median of {len(runs)}; "
                f"watcher CPU {cpu:.2f} s per 100 photos [goal <= 3 s: {'met' if wall <= 3.0 else 'NOT met'}]"
            )
        return 0
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        with contextlib.suppress(redis_lib.RedisError):
            conn.flushdb()
        db.dispose_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
