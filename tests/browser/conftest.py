"""Browser tests: Debian's chromium driven by Playwright (never a downloaded browser), against a
real gunicorn, real RQ workers, real Redis and a SQLite database; screenshots go to test-artifacts/."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

CHROMIUM = os.environ.get("SNAPMATCH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/snapmatch.db"  # pages and streams, not SQL: one backend is enough


@pytest.fixture
def site(processes) -> str:  # type: ignore[no-untyped-def]
    """The web app and one worker, as `make run` starts them."""
    url = processes.web()
    processes.worker("browser-worker")
    return url


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot under test-artifacts/browser/, and into docs/screenshots/ when
    SNAPMATCH_UPDATE_SCREENSHOTS=1 (the set linked from the README)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SNAPMATCH_UPDATE_SCREENSHOTS") == "1":
        from PIL import Image

        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as shot:  # JPEG keeps the committed copies small
            shot.convert("RGB").save(docs / f"{name}.jpg", quality=82, optimize=True)
    return path


@pytest.fixture
def attacker_site() -> Iterator[tuple[str, dict[str, str]]]:
    """A page on another site (localhost vs 127.0.0.1) whose content the test sets."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = pages.get(self.path, "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}", pages
    server.shutdown()
