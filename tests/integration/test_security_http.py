"""Issue 13's security acceptance measured over HTTP on real gunicorn processes: no start without a
strong SECRET_KEY (but the CLI works without one), the sign-in cookie and CSRF, and a 100 MB body
to a JSON route refused before it is read without the web process growing."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ROOT, free_port

PASSWORD = "correct horse battery"


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    # What is measured here is the web process, not the dialect (the same checks run on both
    # databases through the app in test_signin.py and test_bounded_requests.py): keep it short.
    return f"sqlite:///{tmp_path}/snapmatch.db"


def _gunicorn(processes, env: dict[str, str]) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    processes.env = env
    return processes.start(
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{free_port()}",
        "--workers",
        "1",
        "webapp:create_app()",
        name="web-refused",
    )


@pytest.mark.parametrize("key", [None, "dev-only-change-me"])
def test_the_web_process_refuses_to_start_without_a_strong_secret_key(processes, env, tmp_path, key) -> None:  # type: ignore[no-untyped-def]
    bad_env = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    if key is not None:
        bad_env["SECRET_KEY"] = key
    proc = _gunicorn(processes, bad_env)
    assert proc.wait(timeout=60) != 0
    log = (tmp_path / "web-refused.log").read_text()
    assert "SECRET_KEY" in log and "secrets.token_urlsafe(48)" in log


def test_cli_commands_that_sign_nothing_need_no_secret_key(env, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    no_key = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    flask = [sys.executable, "-m", "flask", "--app", "webapp"]
    created = subprocess.run([*flask, "tokens", "create", email], env=no_key, cwd=ROOT, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("smk_")
    listed = subprocess.run([*flask, "tokens", "list", email], env=no_key, cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0 and "smk_" in listed.stdout, listed.stderr
    served = subprocess.run(
        [*flask, "run", "--port", str(free_port())], env=no_key, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert served.returncode != 0 and "SECRET_KEY" in served.stderr


def _sign_in_over_http(url: str, email: str) -> tuple[requests.Session, requests.Response]:
    """A browser-like session signed in through the form, and the sign-in's answer."""
    browser = requests.Session()
    browser.headers["Accept"] = "text/html"
    page = browser.get(url + "/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed_in = browser.post(
        url + "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf}, allow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    return browser, signed_in


def test_a_cookie_session_over_http_needs_the_csrf_token(processes, make_user) -> None:  # type: ignore[no-untyped-def]
    url = processes.web()
    email, _ = make_user("photographer")
    browser, signed_in = _sign_in_over_http(url, email)
    assert signed_in.headers["Location"] == "/events"
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith("snapmatch_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie

    refused = browser.post(url + "/api/events", json={"name": "Gala"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "csrf_failed"
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', browser.get(url + "/me").text).group(1)
    created = browser.post(url + "/api/events", json={"name": "Gala"}, headers={"X-CSRFToken": meta})
    assert created.status_code == 201, created.text


def _post_from_another_site(browser: requests.Session, url: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    """What a browser does with a form another site posts here: the SameSite=Lax session cookie is
    not sent, and a cookie the answer sets is stored over the one the browser had."""
    kept = browser.cookies.copy()
    browser.cookies.clear()
    try:
        return browser.post(url, allow_redirects=False, **kwargs)
    finally:
        answered = browser.cookies.copy()
        browser.cookies = kept
        browser.cookies.update(answered)


def test_a_refused_form_post_leaves_the_session_signed_in(processes, make_user) -> None:  # type: ignore[no-untyped-def]
    """A cross-site form post (no cookie, no token) and a same-site one without the token are both
    refused, and the victim's session goes on as before: same cookie, still signed in."""
    url = processes.web()
    email, _ = make_user("admin")
    browser, _ = _sign_in_over_http(url, email)
    cookie = browser.cookies["snapmatch_session"]
    assert browser.get(url + "/api/me").json()["email"] == email

    for path, form in [
        ("/events", {"name": "Forged"}),
        ("/logout", {}),
        ("/admin/rq/queue/photos/queued/empty", {}),
        ("/login", {"email": email, "password": PASSWORD}),
    ]:
        refused = _post_from_another_site(browser, url + path, data=form)
        assert refused.status_code in (302, 400), (path, refused.status_code)
        assert browser.get(url + "/api/me").status_code == 200, f"signed out by a cross-site POST to {path}"
        assert "Set-Cookie" not in refused.headers and browser.cookies["snapmatch_session"] == cookie, path

        same_site = browser.post(url + path, data=form, allow_redirects=False)
        assert same_site.status_code in (302, 400), (path, same_site.status_code)
        me = browser.get(url + "/api/me")
        assert me.status_code == 200 and me.json()["email"] == email, f"signed out by a POST to {path}"

    # The refusals are readable: a page for forms, the JSON error for the API, the message at /login.
    page = _post_from_another_site(browser, url + "/events", data={"name": "Forged"})
    assert page.headers["Content-Type"].startswith("text/html") and "security token" in page.text
    api = browser.post(url + "/api/events", json={"name": "Forged"}, headers={"Accept": "application/json"})
    assert api.status_code == 400 and api.json()["error"]["code"] == "csrf_failed"
    login = _post_from_another_site(browser, url + "/login?next=/admin", data={"email": email})
    assert login.status_code == 302 and login.headers["Location"].startswith("/login?")
    again = requests.get(url + login.headers["Location"], headers={"Accept": "text/html"})
    assert "security token" in again.text and 'name="next" value="/admin"' in again.text
    # Nothing was created, and the session still does what it did before.
    events = browser.get(url + "/events").text
    assert "Forged" not in events
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', events).group(1)
    created = browser.post(url + "/api/events", json={"name": "Gala"}, headers={"X-CSRFToken": meta})
    assert created.status_code == 201, created.text


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _peak_rss_bytes(pid: int) -> int:
    """Peak resident set (VmHWM): a body read whole and freed again still counts."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _read_response(sock: socket.socket, timeout: float = 60) -> bytes:
    """One whole HTTP response (headers and a Content-Length body), however the server's writes
    arrive in segments; a loaded machine splits them."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while match and len(body) < int(match.group(1)):
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def _post_huge_body(url: str, path: str, token: str, size: int) -> tuple[bytes, int]:
    """Send the headers, read the answer if one comes before any body byte, then try to send the
    whole body anyway. Returns (first bytes of the answer, body bytes the server accepted)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    sock.sendall(head.encode())
    answer = _read_response(sock)  # before a single body byte was sent
    sent = 0
    chunk = b"x" * (1 << 20)
    try:
        while sent < size:
            sent += sock.send(chunk)
    except OSError:
        pass
    sock.close()
    return answer, sent


def test_a_100_mb_body_to_join_is_refused_before_it_is_read(processes, make_user) -> None:  # type: ignore[no-untyped-def]
    url = processes.web()
    master = processes.procs[-1].pid
    _, photographer = make_user("photographer")
    _, attendee = make_user("attendee")
    auth = {"Authorization": f"Bearer {attendee}"}
    event = requests.post(
        url + "/api/events", json={"name": "Gala"}, headers={"Authorization": f"Bearer {photographer}"}
    ).json()
    for _ in range(4):  # every worker has served the route once
        requests.post(url + f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth)
    workers = _children(master)
    before = {pid: _peak_rss_bytes(pid) for pid in workers}

    answer, _sent = _post_huge_body(url, f"/api/events/{event['id']}/join", attendee, 100 << 20)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer
    time.sleep(0.5)
    growth = max(_peak_rss_bytes(pid) - before[pid] for pid in workers)
    assert growth < 50 << 20, f"a web worker's peak RSS grew by {growth / 2**20:.1f} MB"
    # The server still answers.
    again = requests.post(
        url + f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth
    )
    assert again.status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_over_http(processes, make_user) -> None:  # type: ignore[no-untyped-def]
    url = processes.web()
    _, attendee = make_user("attendee")

    def body():  # type: ignore[no-untyped-def]
        yield b'{"access_code": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    resp = requests.post(
        url + "/api/events/1/join",
        data=body(),
        headers={"Authorization": f"Bearer {attendee}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
