"""Live progress streams under load: 200 open SSE streams, then the API's latency beside them.

Starts the web process (gunicorn.conf.py: gevent workers; ``--worker-class gthread`` for the old
way, 2 workers x 8 threads) on a free port with a temporary SQLite database, file storage and Redis
at BENCH_REDIS_URL / REDIS_URL (default redis://127.0.0.1:6379/12; only that DB is flushed).
Opens N streams at once (half photographer batch streams, half attendee event streams, each on its
own connection) and prints: how long until all had their first bytes, how many failed within 10 s,
then GET /api/my-photos p50/p95 (sequential requests while every stream stays open), and how long
an event published to Redis takes to reach its stream's client.
``--silence 65`` also keeps one stream open through that much silence and counts its heartbeats.
``--latency`` measures a photo's ``done`` to its thumbnail in an open attendee page (chromium,
one worker, real face photos from tests/realphotos.py).

Usage: python bench/streams_bench.py [--streams 200] [--worker-class gthread] [--silence 65] [--latency]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


class StreamClient:
    """One SSE connection, driven by the bench's event loop (cheap, so 200 of them do not load the
    machine the server runs on): records when its first bytes came and every line it read."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.connected_at: float | None = None
        self.error: str | None = None
        self.lines: list[tuple[float, str]] = []
        self.closed = False
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            )
            self.writer.write(request.encode())
            status = await asyncio.wait_for(reader.readline(), 10)
            if b" 200 " not in status:
                self.error = status.decode().strip() or "no answer"
                return
            while (await asyncio.wait_for(reader.readline(), 10)).strip():
                pass  # headers
            while True:
                line = await reader.readline()
                if not line:
                    self.closed = True
                    return
                if self.connected_at is None:
                    self.connected_at = time.perf_counter()
                self.lines.append((time.perf_counter(), line.decode(errors="replace")))
        except Exception as exc:  # noqa: BLE001 - any failure is one figure: "could not connect"
            if self.connected_at is None:
                self.error = type(exc).__name__
            else:
                self.closed = True

    def is_alive(self) -> bool:
        return not self.closed


class ClientLoop:
    """An asyncio loop on a thread, running every StreamClient."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def start(self, client: StreamClient) -> None:
        asyncio.run_coroutine_threadsafe(client.run(), self.loop)

    def close_all(self, clients: list[StreamClient]) -> None:
        def close() -> None:
            for c in clients:
                if c.writer is not None:
                    c.writer.close()

        self.loop.call_soon_threadsafe(close)
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)


def measure_my_photos(base: str, token: str, event_id: int, n: int, label: str) -> float:
    """Sequential GET /api/my-photos; prints p50/p95/max and returns p95 (ms)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    times: list[float] = []
    errors = 0
    for _ in range(n):
        t = time.perf_counter()
        try:
            ok = session.get(f"{base}/api/my-photos", params={"event_id": event_id}, timeout=15).status_code == 200
        except requests.RequestException:
            ok = False
        times.append((time.perf_counter() - t) * 1000)
        errors += not ok
        if errors >= 5 and errors == len(times):
            print(f"GET /api/my-photos {label}: the first {errors} requests failed (15 s timeout each); stopped")
            return float("inf")
    p95 = percentile(times, 0.95)
    print(
        f"GET /api/my-photos {label}: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, "
        f"max {max(times):.1f} ms, {errors} errors of {len(times)}"
    )
    return p95 if not errors else float("inf")


def start_server(tmp: Path, env: dict[str, str], worker_class: str) -> tuple[subprocess.Popen, int]:
    from benchenv import start_gunicorn

    extra = [] if worker_class == "gevent" else ["--worker-class", worker_class, "--threads", "8"]
    server, base = start_gunicorn(env, tmp / "gunicorn.log", extra)
    return server, int(base.rsplit(":", 1)[1])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200, help="GET /api/my-photos requests while streams are open")
    parser.add_argument("--worker-class", default="gevent", choices=["gevent", "gthread"])
    parser.add_argument("--silence", type=float, default=0, help="also hold one stream open this many silent seconds")
    parser.add_argument("--latency", action="store_true", help="also measure done -> thumbnail in an attendee page")
    args = parser.parse_args()

    import redis as redis_lib

    conn = redis_lib.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"streams bench: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2

    from benchenv import isolated_environment

    tmp, env = isolated_environment("snapmatch-streams-bench-", REDIS_URL)
    # This measures latency, not the per-user limit: the bench's own polling would reach 60/min.
    env["MY_PHOTOS_RATE_LIMIT"] = "100000/minute"
    from snapmatch import accounts, db, events, progress
    from snapmatch.ingest import ensure_batch

    server = None
    clients: list[StreamClient] = []
    client_loop = ClientLoop()
    try:
        conn.flushdb()
        db.migrate()
        owner = accounts.create_user("bench-owner@example.com", "photographer", "bench-password-1")
        owner_token = accounts.create_token("bench-owner@example.com")
        attendee = accounts.create_user("bench-attendee@example.com", "attendee", "bench-password-1")
        attendee_token = accounts.create_token("bench-attendee@example.com")
        event = events.create_event(owner, "streams bench")
        events.join_event(attendee, event.id, event.access_code)
        batch_ids = [ensure_batch(event.id, owner.id, None) for _ in range(args.streams // 2)]
        db.dispose_all()

        server, port = start_server(tmp, env, args.worker_class)
        base = f"http://127.0.0.1:{port}"
        paths = [(f"/api/batches/{b}/events", owner_token) for b in batch_ids]
        paths += [(f"/api/events/{event.id}/events", attendee_token)] * (args.streams - len(paths))
        measure_my_photos(base, attendee_token, event.id, args.requests, "with no stream open (baseline)")
        threads = " x 8 threads" if args.worker_class == "gthread" else ""
        print(
            f"{args.streams} streams ({len(batch_ids)} batch, {args.streams - len(batch_ids)} attendee), "
            f"gunicorn 2 workers, worker class {args.worker_class}{threads}; "
            f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        t0 = time.perf_counter()
        clients = [StreamClient(port, path, token) for path, token in paths]
        for c in clients:
            client_loop.start(c)
        deadline = time.perf_counter() + 12
        while time.perf_counter() < deadline and any(c.connected_at is None and c.error is None for c in clients):
            time.sleep(0.01)
        connected = [c for c in clients if c.connected_at is not None]
        failed = len(clients) - len(connected)
        all_in = max(c.connected_at for c in connected) - t0 if connected else float("nan")
        print(
            f"connected: {len(connected)} of {len(clients)}; "
            + (f"all within {all_in:.2f} s" if not failed else f"{failed} could not connect within 10 s")
            + f" [goal: all within 5 s: {'met' if not failed and all_in <= 5 else 'NOT met'}]"
        )
        reasons: dict[str, int] = {}
        for c in clients:
            if c.connected_at is None:
                reasons[c.error or "no answer"] = reasons.get(c.error or "no answer", 0) + 1
        if reasons:
            print(f"why streams did not connect: {reasons}")
            if os.environ.get("BENCH_SHOW_LOG"):
                print((tmp / "gunicorn.log").read_text()[-4000:])

        p95 = measure_my_photos(base, attendee_token, event.id, args.requests, f"with {len(connected)} streams open")
        print(f"  [goal p95 <= 50 ms (20 ms): {'met' if p95 <= 50 else 'NOT met'}]")

        # Publish one event to each batch stream at once; time until every client read it.
        batch_clients = [c for c in connected if "/api/batches/" in c.path]
        if batch_clients:
            marks = {id(c): len(c.lines) for c in batch_clients}
            t_pub = time.perf_counter()
            for b in batch_ids:
                progress.publish(conn, b, progress.Stage.QUEUED, 1, filename="x.jpg")
            lat = []
            wait_until = time.perf_counter() + 10
            for c in batch_clients:
                while time.perf_counter() < wait_until:
                    got = [ts for ts, line in c.lines[marks[id(c)] :] if line.startswith("data:")]
                    if got:
                        lat.append((got[0] - t_pub) * 1000)
                        break
                    time.sleep(0.005)
            if lat:
                print(
                    f"event published to {len(batch_ids)} batch streams at once: reached {len(lat)} clients, "
                    f"median {statistics.median(lat):.0f} ms, last {max(lat):.0f} ms after publishing"
                )

        if args.silence:
            probe = next((c for c in connected if "/api/batches/" in c.path), None)
            if probe is not None:
                start_lines = len(probe.lines)
                time.sleep(args.silence)
                beats = sum(1 for _ts, line in probe.lines[start_lines:] if line.startswith(": keep-alive"))
                alive = not probe.closed and probe.is_alive()
                print(
                    f"after {args.silence:.0f} s of silence: stream {'still open' if alive else 'CLOSED'}, "
                    f"{beats} heartbeats received"
                )

        if args.latency:
            from streams_latency import measure_done_to_thumbnail

            client_loop.close_all(clients)
            clients = []
            measure_done_to_thumbnail(base, tmp, env, event.id, owner_token)
        return 0
    finally:
        client_loop.close_all(clients)
        if server is not None:
            stop(server)
        with contextlib.suppress(redis_lib.RedisError):
            conn.flushdb()
        db.dispose_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
