"""What a photographer and an attendee see, in a real browser: uploads reaching done live, and a
gallery that shows exactly the attendee's photos, grows live, and empties when the selfie goes."""

from __future__ import annotations

import json
import re
import time

import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from snapmatch import accounts, events
from tests.browser.conftest import DESKTOP, PHONE, screenshot
from tests.images import jpeg, variant

PASSWORD = "long enough password"
IMAGES_LOADED = "[...document.querySelectorAll('SELECTOR')].every(i => i.complete && i.naturalWidth > 0)"


def sign_in(page, site: str, email: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{site}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_photographer_uploads_twenty_photos_that_reach_done_without_a_reload(site, env, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    accounts.create_user("pho@example.com", "photographer", PASSWORD)
    files = []
    for n in range(20):
        path = tmp_path / f"IMG_{n:04d}.jpg"
        path.write_bytes(jpeg(800, 600, seed=100 + n))
        files.append(path)

    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    sign_in(page, site, "pho@example.com")
    expect(page).to_have_url(re.compile(r"/events$"))
    page.fill("input[name=name]", "City marathon")
    page.click("#create-event button[type=submit]")
    expect(page).to_have_url(re.compile(r"/events/\d+$"))
    event_id = int(page.url.rsplit("/", 1)[1])
    code = events.get_event(event_id).access_code
    expect(page.locator("#access-code")).to_have_text(code)
    expect(page.locator("#join-link")).to_have_text(re.compile(rf"/join/{event_id}$"))
    # Wait for the QR image like a person would (its first request may still be on its way).
    page.wait_for_function(
        "(() => { const i = document.querySelector('img.qr'); return !!i && i.complete && i.naturalWidth > 0; })()"
    )

    page.evaluate("window.__notReloaded = true")
    page.set_input_files("input[type=file][multiple]#files", [str(p) for p in files])
    rows = page.locator("[data-filename]")
    expect(rows).to_have_count(20)
    expect(page.locator('[data-status="done"]')).to_have_count(20, timeout=120_000)
    for path in files:
        expect(page.locator(f'[data-filename="{path.name}"]')).to_have_attribute("data-status", "done")
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#counts")).to_contain_text("20 of 20 handled")
    page.wait_for_function(
        "[...document.querySelectorAll('.file .thumb img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "photographer-desktop")

    # The same files again are skipped before sending (hashed in the browser, checked with the API).
    page.set_input_files("#files", [str(p) for p in files[:3]])
    expect(page.locator('[data-status="duplicate"]')).to_have_count(3)

    phone = browser.new_context(**PHONE)
    phone_page = phone.new_page()
    sign_in(phone_page, site, "pho@example.com")
    phone_page.goto(f"{site}/events/{event_id}")
    expect(phone_page.locator("#access-code")).to_have_text(code)
    # As a person scrolling down the page: every processed photo's thumbnail loads (they are lazy).
    expect(phone_page.locator("#processed img")).to_have_count(20)
    phone_page.locator("#processed img").last.scroll_into_view_if_needed()
    phone_page.wait_for_function(
        "[...document.querySelectorAll('#processed img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    phone_page.evaluate("window.scrollTo(0, 0)")  # the sticky header back at the top of the picture
    screenshot(phone_page, "photographer-phone")
    context.close()
    phone.close()


def test_the_event_photo_count_follows_uploads_and_processing_live(processes, env, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The line "N photos in this event" counts photos as the server accepts them (no worker yet: queued),
    then as a worker finishes them, on the page as it was first loaded."""
    url = processes.web()
    owner = accounts.create_user("pho@example.com", "photographer", PASSWORD)
    event = events.create_event(owner, "Harbour swim")
    files = []
    for n in range(3):
        path = tmp_path / f"SWIM_{n}.jpg"
        path.write_bytes(jpeg(640, 480, seed=300 + n))
        files.append(path)

    page = browser.new_context(**DESKTOP).new_page()
    sign_in(page, url, "pho@example.com")
    expect(page).to_have_url(re.compile(r"/events$"))
    page.goto(f"{url}/events/{event.id}")
    count = page.locator("p", has_text=re.compile(r"photos? in this event"))
    expect(count).to_have_text("0 photos in this event.")
    page.evaluate("window.__notReloaded = true")

    page.set_input_files("#files", [str(p) for p in files])
    expect(page.locator('[data-status="queued"]')).to_have_count(3)
    expect(count).to_have_text("3 photos in this event: 3 queued.")
    processes.worker("count-worker")
    expect(page.locator('[data-status="done"]')).to_have_count(3, timeout=120_000)
    expect(count).to_have_text("3 photos in this event: 3 done.")
    expect(page.locator("#event-photo-count")).to_have_attribute("data-total", "3")
    assert page.evaluate("window.__notReloaded") is True
    page.context.close()


def test_attendee_joins_on_a_phone_and_sees_exactly_their_photos_live(site, env, browser, face_images) -> None:  # type: ignore[no-untyped-def]
    owner = accounts.create_user("owner@example.com", "photographer", PASSWORD)
    token = accounts.create_token("owner@example.com")
    event = events.create_event(owner, "Summit dinner")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    biden = face_images / "biden.jpg"
    photos = {
        "obama.jpg": (face_images / "obama.jpg").read_bytes(),
        "obama2.jpg": (face_images / "obama2.jpg").read_bytes(),
        "biden.jpg": biden.read_bytes(),
        "biden-mirrored.jpg": variant(biden, flip=True, crop=0.85, gain=1.15, seed=1),
        "no-faces.jpg": jpeg(seed=7),
    }
    answer = api.post(
        f"{site}/api/events/{event.id}/photos", files=[("files", (n, d)) for n, d in photos.items()], timeout=60
    ).json()
    ids = {p["filename"]: p["photo_id"] for p in answer["photos"]}

    def all_done() -> bool:
        counts = api.get(f"{site}/api/events/{event.id}", timeout=10).json()["photo_counts"]
        return counts.get("done", 0) == len(photos)

    deadline = time.time() + 90
    while not all_done():
        assert time.time() < deadline, "the event's photos were not processed in time"
        time.sleep(0.3)

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(f"{site}/join/{event.id}")
    page.fill("input[name=access_code]", event.access_code.lower())
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("#join-form button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/e/{event.id}$"))
    # The URL changes before the page's script runs; a file chosen earlier would find no listener
    # (what failed once on a loaded machine: "No selfie yet" after 120 s).
    page.wait_for_load_state("load")
    expect(page.locator("#indexing")).to_contain_text("5 of 5 photos checked")

    page.set_input_files("input[type=file][name=selfie]", str(face_images / "obama_partial_face.jpg"))
    gallery = page.locator("[data-photo-id]")
    expected = sorted([ids["obama.jpg"], ids["obama2.jpg"]])
    shown_ids = "[...document.querySelectorAll('[data-photo-id]')].map(e => Number(e.dataset.photoId))"
    shown_ids += ".sort((a, b) => a - b)"
    wanted = json.dumps(expected).replace(" ", "")
    try:  # the selfie is processed by a worker on a busy machine: allow it time
        page.wait_for_function(f"JSON.stringify({shown_ids}) === '{wanted}'", timeout=120_000)
    except PlaywrightTimeout as exc:
        maybe = page.evaluate(
            "[...document.querySelectorAll('[data-maybe-photo-id]')].map(e => e.dataset.maybePhotoId)"
        )
        status = page.locator("#selfie-status").inner_text()
        raise AssertionError(f"gallery {page.evaluate(shown_ids)} != {expected}; maybe {maybe}; {status!r}") from exc
    page.wait_for_function(
        "[...document.querySelectorAll('[data-photo-id] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.evaluate("window.__notReloaded = true")

    # A new photo of her, uploaded now, appears without a reload.
    late = api.post(
        f"{site}/api/events/{event.id}/photos",
        files=[("files", ("obama3.jpg", (face_images / "obama3.jpg").read_bytes()))],
        timeout=60,
    ).json()["photos"][0]["photo_id"]
    expect(page.locator(f'[data-photo-id="{late}"]')).to_be_visible(timeout=60_000)
    expect(gallery).to_have_count(3)
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_function(
        "[...document.querySelectorAll('[data-photo-id] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "attendee-phone")

    desktop = browser.new_context(**DESKTOP)
    wide = desktop.new_page()
    sign_in(wide, site, "alice@example.com")
    expect(wide).to_have_url(re.compile(rf"/e/{event.id}$"))
    expect(wide.locator("[data-photo-id]")).to_have_count(3)
    wide.wait_for_function(
        "[...document.querySelectorAll('[data-photo-id] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(wide, "attendee-desktop")
    desktop.close()

    # Deleting the selfie asks first, then empties the gallery.
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.click("[data-action=delete-selfie]")
    expect(gallery).to_have_count(0)
    assert asked and "Delete your selfie" in asked[0]
    context.close()
