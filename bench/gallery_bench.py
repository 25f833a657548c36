"""The attendee gallery at 1,500 photos in a real browser (Debian's chromium through Playwright).

Starts the web process (gunicorn.conf.py) on a temporary SQLite database and Redis at
BENCH_REDIS_URL / REDIS_URL (default redis://127.0.0.1:6379/12; only that DB is flushed). Writes an
event whose attendee matched N photos (rows written directly; one small stored thumbnail), signs
the attendee in, and prints: time until all N gallery items are in the page, how many thumbnails
the browser fetched (lazy loading: only those near the screen), frame intervals while scrolling
to the bottom (p50/p95/max), and the time for one more match to appear live in the full gallery.

Usage: python bench/gallery_bench.py [--photos 1500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
CHROMIUM = os.environ.get("SNAPMATCH_CHROMIUM", "/usr/bin/chromium")
SCROLL_AND_TIME = """async () => {
  const gaps = [];
  let last = performance.now();
  let running = true;
  const tick = (t) => { gaps.push(t - last); last = t; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const end = document.documentElement.scrollHeight;
  for (let y = 0; y < end; y += 400) {
    window.scrollTo(0, y);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  }
  running = false;
  return gaps.slice(2);
}"""


def write_matches(event_id: int, attendee_id: int, n: int, thumbnail_key: str, start: int = 0) -> list[int]:
    """``n`` processed photos, each with one face that the attendee's selfie matched."""
    from sqlalchemy import insert, select

    from snapmatch import db
    from snapmatch.schema import PhotoStatus, faces, matches, photos, selfies

    now = db.utcnow()
    with db.transaction() as conn:
        selfie_id = conn.execute(
            select(selfies.c.id).where(selfies.c.event_id == event_id, selfies.c.user_id == attendee_id)
        ).scalar()
        if selfie_id is None:
            selfie_id = conn.execute(
                insert(selfies).values(
                    event_id=event_id,
                    user_id=attendee_id,
                    image_key="selfies/bench.jpg",
                    status="ready",
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
        ids = []
        for i in range(start, start + n):
            photo_id = conn.execute(
                insert(photos).values(
                    event_id=event_id,
                    sha256=f"{i:064x}",
                    filename=f"IMG_{i:05d}.jpg",
                    content_type="image/jpeg",
                    size_bytes=1,
                    width=320,
                    height=240,
                    original_key=thumbnail_key,
                    thumbnail_key=thumbnail_key,
                    status=PhotoStatus.DONE.value,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            face_id = conn.execute(
                insert(faces).values(
                    photo_id=photo_id,
                    event_id=event_id,
                    face_index=0,
                    left=0,
                    top=0,
                    width=10,
                    height=10,
                    score=1.0,
                    embedding=b"",
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(matches).values(
                    selfie_id=selfie_id, face_id=face_id, photo_id=photo_id, event_id=event_id, distance=0.4
                )
            )
            ids.append(photo_id)
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1500)
    args = parser.parse_args()

    import redis as redis_lib
    from playwright.sync_api import sync_playwright

    conn = redis_lib.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis_lib.RedisError as exc:
        print(f"gallery bench: SKIPPED: no Redis at {REDIS_URL}: {exc}", file=sys.stderr)
        return 2
    from benchenv import isolated_environment
    from streams_bench import start_server, stop

    tmp, env = isolated_environment("snapmatch-gallery-bench-", REDIS_URL)
    from snapmatch import accounts, db, events
    from snapmatch.cache import invalidate_my_photos
    from snapmatch.storage import open_storage
    from tests.images import jpeg

    server = None
    try:
        conn.flushdb()
        db.migrate()
        owner = accounts.create_user("gallery-owner@example.com", "photographer", "bench-password-1")
        attendee = accounts.create_user("gallery-attendee@example.com", "attendee", "bench-password-1")
        event = events.create_event(owner, "gallery bench")
        events.join_event(attendee, event.id, event.access_code)
        thumb = "events/bench/thumbs/one.jpg"
        open_storage(env["STORAGE_URL"]).put(thumb, jpeg(320, 240, seed=5), "image/jpeg")
        write_matches(event.id, attendee.id, args.photos, thumb)
        server, port = start_server(tmp, env, "gevent")
        base = f"http://127.0.0.1:{port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            thumbs = []
            page.on("request", lambda r: thumbs.append(r.url) if r.url.endswith("/thumbnail") else None)
            page.goto(f"{base}/login")
            page.fill("input[name=email]", "gallery-attendee@example.com")
            page.fill("input[name=password]", "bench-password-1")
            t0 = time.perf_counter()
            page.click("button[type=submit]")
            page.wait_for_function(
                f"document.querySelectorAll('[data-photo-id]').length === {args.photos}", timeout=60000
            )
            shown = time.perf_counter() - t0
            page.wait_for_timeout(500)
            fetched_before_scroll = len(thumbs)
            gaps = page.evaluate(SCROLL_AND_TIME)
            print(
                f"gallery of {args.photos} photos (chromium 1280x860, load average "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}): sign-in click -> all items in the page "
                f"{shown:.2f} s; thumbnails fetched before scrolling {fetched_before_scroll} (lazy)"
            )
            if gaps:
                print(
                    f"scrolling to the bottom in 400 px steps: {len(gaps)} frames, interval p50 "
                    f"{statistics.median(gaps):.1f} ms, p95 {sorted(gaps)[int(0.95 * len(gaps)) - 1]:.1f} ms, "
                    f"max {max(gaps):.1f} ms; thumbnails fetched by then {len(thumbs)}"
                )
            page.evaluate("window.scrollTo(0, 0)")
            new_id = write_matches(event.id, attendee.id, 1, thumb, start=args.photos)[0]
            t1 = time.perf_counter()
            invalidate_my_photos(conn, event.id, [attendee.id])
            page.wait_for_selector(f'[data-photo-id="{new_id}"]', timeout=30000)
            print(f"one more match -> in the gallery of {args.photos + 1}: {1000 * (time.perf_counter() - t1):.0f} ms")
            browser.close()
        return 0
    finally:
        if server is not None:
            stop(server)
        with contextlib.suppress(redis_lib.RedisError):
            conn.flushdb()
        db.dispose_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
