"""Browser tests: Debian's chromium driven by Playwright (never a downloaded browser), against a
real gunicorn, real RQ workers, real Redis and a SQLite database; screenshots go to test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

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
