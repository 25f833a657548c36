"""The admin page and rq-dashboard in Debian's chromium against real processes (gunicorn, a worker):
an admin sees both and requeues a failed photo that then ends done; an attendee and a photographer
are refused both; a cross-site page cannot make rq-dashboard do anything."""

from __future__ import annotations

import io
import os
import time

import pytest
import redis as redis_lib
import requests
from playwright.sync_api import Browser, Page, expect
from rq import Queue

from snapmatch import accounts, db
from snapmatch.pipeline import mark_photo_failed
from snapmatch.schema import photos
from tests.images import jpeg

pytestmark = pytest.mark.slow
PASSWORD = "long enough password"
XSS = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):  # type: ignore[no-untyped-def]
    """Debian's chromium; Playwright never downloads a browser here."""
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": ["--no-sandbox"]}


def _sign_in(browser: Browser, url: str, email: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url or page.locator("input[name=password]").count() == 0, "sign-in failed"
    return page


def _photo_status(photo_id: int) -> str:
    with db.connection() as conn:
        return conn.execute(photos.select().where(photos.c.id == photo_id)).first().status


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_admin_requeues_a_failed_photo_and_others_are_refused(
    env, processes, browser, attacker_site, redis_url
) -> None:  # type: ignore[no-untyped-def]
    url = processes.web()
    for role in ("admin", "photographer", "attendee"):
        accounts.create_user(f"{role}@example.com", role, PASSWORD)
    token = accounts.create_token("photographer@example.com")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    event = api.post(f"{url}/api/events", json={"name": "Gala"}).json()
    upload = api.post(
        f"{url}/api/events/{event['id']}/photos", files=[("files", (f"{XSS}.jpg"[-60:], io.BytesIO(jpeg(seed=5))))]
    ).json()
    photo = upload["photos"][0]
    if photo["status"] == "rejected":  # names with markup may be refused outright; then use a plain one
        upload = api.post(
            f"{url}/api/events/{event['id']}/photos", files=[("files", ("plain.jpg", jpeg(seed=5)))]
        ).json()
        photo = upload["photos"][0]
    photo_id = photo["photo_id"]
    r = redis_lib.Redis.from_url(redis_url)
    Queue("photos", connection=r).empty()  # no worker yet: the photo fails before it runs
    mark_photo_failed(photo_id, "processing_error")
    assert _photo_status(photo_id) == "failed"
    processes.worker("browser-worker")

    admin = _sign_in(browser, url, "admin@example.com")
    admin.goto(f"{url}/admin")
    row = admin.locator(f"[data-failed-photo-id='{photo_id}']")
    expect(row).to_be_visible(timeout=15000)
    expect(row).to_contain_text("processing_error")
    expect(admin.locator("#queues tr[data-queue=photos]")).to_be_visible()
    expect(admin.locator("#schedules tr[data-schedule=sweep]")).to_be_visible()
    if os.environ.get("SNAPMATCH_SCREENSHOTS"):
        admin.screenshot(path=os.path.join(os.environ["SNAPMATCH_SCREENSHOTS"], "admin.png"), full_page=True)
    row.locator("[data-action=requeue-photo]").click()
    deadline = time.time() + 90
    while _photo_status(photo_id) != "done":
        assert time.time() < deadline, f"photo {photo_id} is {_photo_status(photo_id)}, not done"
        time.sleep(0.5)
    expect(admin.locator(f"[data-failed-photo-id='{photo_id}']")).to_have_count(0, timeout=15000)
    assert admin.evaluate("window.__pwned") is None

    # rq-dashboard for the admin, with a waiting job whose description carries markup.
    r.sadd("snapmatch:paused-queues", "photos")  # the worker leaves the queue alone
    time.sleep(6)  # a pause takes effect within 5 s
    Queue("photos", connection=r).enqueue("jobs.schedules.record_queue_history", description=XSS)
    dash = admin.context.new_page()
    dash.goto(f"{url}/admin/rq/0/view/jobs/photos/queued/8/asc/1")
    expect(dash.locator("body")).to_contain_text("onerror", timeout=15000)  # shown as text
    assert dash.evaluate("window.__pwned") is None
    assert Queue("photos", connection=r).count == 1

    # rq-dashboard's own Empty button works for the admin (the CSRF token is injected).
    if os.environ.get("SNAPMATCH_SCREENSHOTS"):
        dash.screenshot(path=os.path.join(os.environ["SNAPMATCH_SCREENSHOTS"], "rq.png"), full_page=True)
    dash.locator("#empty-btn").click(timeout=10000)
    dash.locator("#confirmation-modal-yes").click()
    deadline = time.time() + 10
    while Queue("photos", connection=r).count and time.time() < deadline:
        time.sleep(0.2)
    assert Queue("photos", connection=r).count == 0

    # A cross-site page posts to rq-dashboard's actions with the admin's browser: nothing happens.
    Queue("photos", connection=r).enqueue("jobs.schedules.record_queue_history")
    # Even a request that does carry the admin's session cookie (a same-site attacker) needs the token.
    forged = admin.context.request.post(f"{url}/admin/rq/queue/photos/queued/empty")
    assert forged.status == 400 and Queue("photos", connection=r).count == 1
    origin, pages = attacker_site
    pages["/attack"] = f"""<html><body>
      <form id=f method=post action="{url}/admin/rq/queue/photos/queued/empty"></form>
      <img src="{url}/admin/rq/requeue/maintenance">
      <script>
        fetch("{url}/admin/rq/queue/photos/queued/empty", {{method: "POST", credentials: "include", mode: "no-cors"}});
        document.getElementById("f").submit();
      </script></body></html>"""
    evil = admin.context.new_page()
    evil.goto(f"{origin}/attack")
    evil.wait_for_load_state("networkidle")
    time.sleep(1)
    assert Queue("photos", connection=r).count == 1, "a cross-site POST emptied the queue"

    for role in ("attendee", "photographer"):
        page = _sign_in(browser, url, f"{role}@example.com")
        for path in ("/admin", "/admin/rq/", "/admin/rq/0/data/queues.json"):
            response = page.goto(f"{url}{path}")
            assert response is not None and response.status == 403, (role, path, response and response.status)


def test_rq_dashboard_shows_job_text_escaped_once(env, processes, browser, redis_url) -> None:  # type: ignore[no-untyped-def]
    """A file name with ' and & (and markup) in a job's description and in a failed job's error reads
    as written in rq-dashboard's lists and job page: escaped once, never shown as &amp; or run."""
    from rq import SimpleWorker

    url = processes.web()  # no worker: the queued job stays queued
    accounts.create_user("admin@example.com", "admin", PASSWORD)
    name = "Tom's & Jerry's <b>finish</b>.jpg"
    r = redis_lib.Redis.from_url(redis_url)
    photos_queue = Queue("photos", connection=r)
    failing = photos_queue.enqueue("builtins.int", name, description=f"photo 7 ({name})")
    SimpleWorker([photos_queue], connection=r).work(burst=True)  # int(name) raises ValueError
    assert failing.get_status(refresh=True) == "failed"
    waiting = photos_queue.enqueue("jobs.schedules.record_queue_history", description=f"photo 8 ({name}) {XSS}")

    admin = _sign_in(browser, url, "admin@example.com")
    admin.goto(f"{url}/admin/rq/0/view/jobs/photos/queued/8/asc/1")
    expect(admin.locator(".description")).to_have_text(f"photo 8 ({name}) {XSS}", timeout=15000)
    admin.goto(f"{url}/admin/rq/0/view/jobs/photos/failed/8/asc/1")
    expect(admin.locator(".description")).to_have_text(f"photo 7 ({name})", timeout=15000)
    expect(admin.locator(".exc_info")).to_contain_text(f"invalid literal for int() with base 10: {name!r}")
    admin.goto(f"{url}/admin/rq/0/view/job/{waiting.id}")
    expect(admin.locator(".description-scroll")).to_have_text(f"photo 8 ({name}) {XSS}", timeout=15000)
    assert "&amp;" not in admin.locator("body").inner_text()
    assert admin.evaluate("window.__pwned") is None
