"""Time from a photo's ``done`` to its thumbnail on screen in an open attendee page.

Part of streams_bench.py (``--latency``): one RQ worker, Debian's chromium through Playwright, the
attendee's selfie and photos of the same person from tests/realphotos.py, uploaded one at a time.
``done`` is the Redis time of the photo's ``photo:done`` stream entry (its id); on screen is the
browser's clock when that thumbnail's ``load`` event fired. Both clocks are this machine's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SNAPMATCH_CHROMIUM", "/usr/bin/chromium")
WATCH = """() => {
  window.__loaded = {};
  const mark = (id, img) => {
    const done = () => { window.__loaded[id] = Date.now(); };
    if (img.complete && img.naturalWidth) done(); else img.addEventListener("load", done, { once: true });
  };
  new MutationObserver((changes) => {
    for (const c of changes) for (const n of c.addedNodes) {
      if (n.dataset && n.dataset.photoId) mark(n.dataset.photoId, n.querySelector("img"));
    }
  }).observe(document.getElementById("gallery"), { childList: true });
}"""


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def measure_done_to_thumbnail(base: str, tmp: Path, env: dict[str, str], event_id: int, owner_token: str) -> None:
    import redis as redis_lib
    from playwright.sync_api import sync_playwright

    from snapmatch import accounts, progress
    from tests.images import variant
    from tests.realphotos import face_images_dir

    faces = face_images_dir()
    conn = redis_lib.Redis.from_url(env["REDIS_URL"])
    attendee = requests.Session()
    attendee.headers["Authorization"] = f"Bearer {accounts.create_token('bench-attendee@example.com')}"
    owner = requests.Session()
    owner.headers["Authorization"] = f"Bearer {owner_token}"
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115 (the worker's log, open while it runs)
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobs.worker", "--name", "latency-bench"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        put = attendee.put(
            f"{base}/api/events/{event_id}/selfie",
            files={"file": ("me.jpg", (faces / "obama_partial_face.jpg").read_bytes())},
            timeout=30,
        )
        put.raise_for_status()
        _wait(
            lambda: (
                attendee.get(f"{base}/api/my-photos", params={"event_id": event_id}, timeout=10).json()["status"]
                == "ready"
            ),
            60,
            "the selfie",
        )
        sources = [faces / "obama.jpg", faces / "obama2.jpg", faces / "obama3.jpg"]
        uploads = [(f"obama-{n}.jpg", variant(sources[n % 3], crop=0.97 - 0.01 * n, seed=20 + n)) for n in range(8)]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            page.goto(f"{base}/login")
            page.fill("input[name=email]", "bench-attendee@example.com")
            page.fill("input[name=password]", "bench-password-1")
            page.click("button[type=submit]")
            page.wait_for_url(f"**/e/{event_id}")
            page.evaluate(WATCH)
            latencies = []
            for name, data in uploads:
                answer = owner.post(f"{base}/api/events/{event_id}/photos", files=[("files", (name, data))], timeout=60)
                photo = answer.json()["photos"][0]
                if photo["status"] != "queued":
                    continue
                photo_id, batch = photo["photo_id"], answer.json()["batch_id"]
                shown = _wait(lambda pid=photo_id: page.evaluate(f"window.__loaded['{pid}']"), 60, f"photo {photo_id}")
                done_ms = next(
                    int(entry_id.split("-")[0])
                    for entry_id, d in progress.read(conn, batch, "0")
                    if d["stage"] == progress.Stage.DONE.value and d["photoId"] == photo_id
                )
                latencies.append(shown - done_ms)
            browser.close()
        if latencies:
            print(
                f"photo done -> thumbnail loaded in an open attendee page (chromium, phone size), "
                f"{len(latencies)} photos one at a time: median {statistics.median(latencies):.0f} ms, "
                f"max {max(latencies):.0f} ms [goal <= 1 s: {'met' if max(latencies) <= 1000 else 'NOT met'}]"
            )
        else:
            print("photo done -> thumbnail: no photo of the attendee was processed (check the worker log)")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
