"""Security figures over HTTP (issue 13): oversized bodies refused before they are read, sign-in
timing for a wrong password vs an unknown email, CSRF and the sign-in rate limit.

Starts the Procfile's web process (gunicorn.conf.py: 2 gevent workers) on a free port with a
temporary SQLite database, file storage and Redis at REDIS_URL (default redis://127.0.0.1:6379/12;
only that DB is flushed, before and after), and a generated SECRET_KEY.

1. A 100 MB body to POST /api/events/<id>/join, as a client without ``Expect: 100-continue`` sends
   it: headers first, then the body as fast as the server takes it. Measured: time from the end of
   the headers to the 413, body bytes the server took before closing, growth of the web workers'
   peak RSS (VmHWM, max over workers). Then the same as a chunked body (no Content-Length).
2. Sign-in cost: POST /api/tokens with a wrong password for an existing user vs an unknown email,
   interleaved, median and p90 of the round trip (the per-address limit is raised for this run;
   each attempt names a different email so the per-email limit stays out of the way).
3. CSRF: a cookie session from /login POSTs /api/events without, then with, the token.
4. The per-email sign-in limit at its default (5/minute): the status of the 6th attempt.

Usage: python bench/security_http.py [--timing-rounds 30] [--bodies-only]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
BODY = 100 << 20
PASSWORD = "bench-password-1"


def worker_pids(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
    return pids


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM): a body read whole and freed again still shows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def huge_post(port: int, path: str, token: str, chunked: bool) -> tuple[str, float, int]:
    """Headers first, then wait for an answer before sending a byte of the body; then send the body
    anyway, as a client without ``Expect: 100-continue`` would. Returns (status line, seconds from
    sending the headers to the answer, body bytes the server took before closing)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    sent = 0
    chunk = b"x" * (1 << 20)
    t0 = time.perf_counter()  # before sending: on a busy machine sendall may yield to the server
    if chunked:
        # A chunked body's length is only known by reading it: send the first 1 MiB chunk with the
        # headers, so the answer shows the server stopped reading at the limit.
        chunk = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sock.sendall(head.encode() + chunk)
        sent = len(chunk)
    else:
        sock.sendall(head.encode())
    sock.settimeout(5)
    try:
        answer = sock.recv(4096)
    except TimeoutError:
        answer = b""  # no answer before the body: the server waits to read it
    seconds = time.perf_counter() - t0
    try:
        while sent < BODY:
            sent += sock.send(chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        if not answer:
            sock.settimeout(60)
            answer = sock.recv(4096)
            seconds = time.perf_counter() - t0
    except OSError:
        pass
    sock.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), seconds, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing-rounds", type=int, default=30)
    parser.add_argument("--bodies-only", action="store_true", help="only part 1 (also runs on older versions)")
    args = parser.parse_args()

    import redis as redis_lib
    import requests

    conn = redis_lib.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"security bench: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2

    from benchenv import isolated_environment, start_gunicorn

    # The per-address limit is raised so part 2 can make its attempts; per email stays at its default.
    tmp, env = isolated_environment("snapmatch-security-bench-", REDIS_URL, LOGIN_RATE_LIMIT_PER_IP="10000/minute")
    from snapmatch import accounts, db

    server = None
    try:
        conn.flushdb()
        db.migrate()
        accounts.create_user("bench-photographer@example.com", "photographer", PASSWORD)
        accounts.create_user("bench-attendee@example.com", "attendee", PASSWORD)
        for i in range(args.timing_rounds):
            accounts.create_user(f"bench-wrong-{i}@example.com", "attendee", PASSWORD)
        photographer = accounts.create_token("bench-photographer@example.com")
        attendee = accounts.create_token("bench-attendee@example.com")
        db.dispose_all()

        server, base = start_gunicorn(env, tmp / "gunicorn.log")

        event = requests.post(
            f"{base}/api/events", json={"name": "bench"}, headers={"Authorization": f"Bearer {photographer}"}
        ).json()
        join = f"/api/events/{event['id']}/join"
        for _ in range(8):
            requests.post(
                base + join, json={"access_code": event["access_code"]}, headers={"Authorization": f"Bearer {attendee}"}
            )
        print(
            "gunicorn as in gunicorn.conf.py (2 gevent workers) on loopback; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print("1. 100 MB body to POST /api/events/<id>/join (JSON route, limit 64 KiB)")
        for chunked in (False, False, True, True):
            workers = worker_pids(server.pid)
            before = {pid: peak_rss(pid) for pid in workers}
            status, seconds, sent = huge_post(urlsplit(base).port, join, attendee, chunked)
            time.sleep(0.3)
            growth = max(peak_rss(pid) - before[pid] for pid in workers) / 2**20
            kind = "chunked, no Content-Length" if chunked else "Content-Length: 104857600"
            print(
                f"   {kind:<26}: {status!r} {seconds * 1000:.1f} ms after sending the headers; the client got "
                f"{sent / 2**20:.1f} MB of the body into the socket; worker peak RSS growth {growth:.1f} MB"
            )

        if args.bodies_only:
            return 0
        print("2. sign-in cost (POST /api/tokens, round trip, interleaved)")
        wrong, unknown = [], []
        session = requests.Session()
        for i in range(args.timing_rounds):
            for email, into in ((f"bench-wrong-{i}@example.com", wrong), (f"nobody-{i}@example.com", unknown)):
                t0 = time.perf_counter()
                r = session.post(f"{base}/api/tokens", json={"email": email, "password": "not-the-password"})
                into.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 401, r.text
        for name, values in (("wrong password", wrong), ("unknown email", unknown)):
            values.sort()
            print(
                f"   {name:<15}: median {statistics.median(values):.1f} ms, "
                f"p90 {values[int(len(values) * 0.9) - 1]:.1f} ms (n={len(values)})"
            )

        print("3. CSRF with a cookie session from /login")
        conn.flushdb()  # fresh rate-limit counters
        browser = requests.Session()
        browser.headers["Accept"] = "text/html"
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(f"{base}/login").text).group(1)
        signed = browser.post(
            f"{base}/login",
            data={"email": "bench-photographer@example.com", "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
        )
        cookie = signed.headers.get("Set-Cookie", "")
        flags = [f for f in ("HttpOnly", "SameSite=Lax", "Secure") if f in cookie]
        print(f"   sign-in: {signed.status_code} -> {signed.headers.get('Location')}; cookie flags {flags}")
        no_token = browser.post(f"{base}/api/events", json={"name": "x"})
        meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', browser.get(f"{base}/me").text).group(1)
        with_token = browser.post(f"{base}/api/events", json={"name": "x"}, headers={"X-CSRFToken": meta})
        print(
            f"   POST /api/events without token: {no_token.status_code} "
            f"{no_token.json()['error']['code']}; with X-CSRFToken: {with_token.status_code}"
        )

        print("4. per-email sign-in limit (default 5/minute)")
        statuses = []
        for _ in range(6):
            r = requests.post(f"{base}/api/tokens", json={"email": "bench-attendee@example.com", "password": "nope"})
            statuses.append(r.status_code)
        print(f"   six wrong attempts: {statuses}; Retry-After {r.headers.get('Retry-After')} s")
        return 0
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        conn.flushdb()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
