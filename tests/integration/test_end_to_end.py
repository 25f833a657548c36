"""Acceptance over HTTP with real processes: gunicorn, two RQ workers, the scheduler, real faces.

Two people (Obama: several real photos; Biden: one real photo and reframed copies), a group
photo of both, a photo without faces; two attendees with selfies each see exactly their photos.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.images import compose, head_crop, jpeg, variant

pytestmark = pytest.mark.slow


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def new_account(env: dict[str, str], email: str, role: str) -> requests.Session:
    cli(env, "users", "create", email, "--role", role, "--password", "long enough password")
    token = cli(env, "tokens", "create", email).strip().splitlines()[-1]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_two_attendees_see_exactly_their_photos(env, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    url = processes.web()
    processes.worker("e2e-worker-1")
    processes.worker("e2e-worker-2")
    processes.start(sys.executable, "-m", "jobs.scheduler", name="scheduler")

    photographer = new_account(env, "pho@example.com", "photographer")
    event = photographer.post(f"{url}/api/events", json={"name": "Inauguration"}).json()

    obama, biden = face_images / "obama.jpg", face_images / "biden.jpg"
    photos = {
        "obama.jpg": obama.read_bytes(),
        "obama2.jpg": (face_images / "obama2.jpg").read_bytes(),
        "obama3.jpg": (face_images / "obama3.jpg").read_bytes(),
        "obama-32bit.png": (face_images / "32bit.png").read_bytes(),
        "biden.jpg": biden.read_bytes(),
        "biden-mirrored.jpg": variant(biden, flip=True, crop=0.85, gain=1.15, seed=1),
        "biden-darker.jpg": variant(biden, crop=0.9, gain=0.8, seed=2),
        "group.jpg": compose([head_crop(face_images / "obama3.jpg"), head_crop(biden)], seed=3),
        "no-faces.jpg": jpeg(1600, 1200, seed=7),
    }
    resp = photographer.post(
        f"{url}/api/events/{event['id']}/photos", files=[("files", (n, d)) for n, d in photos.items()]
    )
    assert resp.status_code == 202
    results = {p["filename"]: p for p in resp.json()["photos"]}
    assert all(p["status"] == "queued" for p in results.values()), results
    ids = {name: p["photo_id"] for name, p in results.items()}

    def batch_finished():  # type: ignore[no-untyped-def]
        batch = photographer.get(f"{url}/api/batches/{resp.json()['batch_id']}").json()
        return batch if batch["counts"].get("done", 0) == len(photos) else None

    batch = wait_for(batch_finished, 180, "the batch to be processed")
    faces = {p["filename"]: p["faces"] for p in batch["photos"]}
    assert faces["group.jpg"] == 2 and faces["no-faces.jpg"] == 0 and faces["obama.jpg"] == 1

    # attendees join and upload selfies (a different photo of each person)
    alice = new_account(env, "alice@example.com", "attendee")
    bob = new_account(env, "bob@example.com", "attendee")
    for attendee, selfie in (
        (alice, (face_images / "obama_partial_face.jpg").read_bytes()),
        (bob, variant(biden, flip=True, crop=0.8, gain=1.25, seed=9)),
    ):
        assert attendee.post(f"{url}/api/events/{event['id']}/join", json=event).status_code == 200
        put = attendee.put(f"{url}/api/events/{event['id']}/selfie", files={"file": ("me.jpg", selfie)})
        assert put.status_code == 202

    def mine(attendee):  # type: ignore[no-untyped-def]
        body = attendee.get(f"{url}/api/my-photos", params={"event_id": event["id"]}).json()
        return body if body["status"] == "ready" else None

    alice_photos = {p["photo_id"] for p in wait_for(lambda: mine(alice), 60, "alice's selfie")["photos"]}
    bob_photos = {p["photo_id"] for p in wait_for(lambda: mine(bob), 60, "bob's selfie")["photos"]}
    expect_alice = {ids[n] for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama-32bit.png", "group.jpg")}
    expect_bob = {ids[n] for n in ("biden.jpg", "biden-mirrored.jpg", "biden-darker.jpg", "group.jpg")}
    assert alice_photos == expect_alice
    assert bob_photos == expect_bob

    # a photo uploaded after the selfies is matched too (incremental in that direction)
    late = photographer.post(
        f"{url}/api/events/{event['id']}/photos",
        files=[("files", ("late-biden.jpg", variant(biden, crop=0.95, gain=1.05, seed=4)))],
    ).json()["photos"][0]
    wait_for(lambda: late["photo_id"] in {p["photo_id"] for p in mine(bob)["photos"]}, 60, "the late photo")
    assert late["photo_id"] not in {p["photo_id"] for p in mine(alice)["photos"]}

    # each sees only their own photos
    only_bob = ids["biden.jpg"]
    assert alice.get(f"{url}/api/photos/{only_bob}").status_code in (403, 404)
    assert alice.get(f"{url}/api/photos/{only_bob}/thumbnail").status_code in (403, 404)
    assert bob.get(f"{url}/api/photos/{only_bob}").json()["status"] == "done"
    thumb = bob.get(f"{url}/api/photos/{only_bob}/thumbnail")
    assert (
        thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    )
    assert alice.get(f"{url}/api/photos/{ids['group.jpg']}").status_code == 200

    # the same bytes again are a duplicate
    again = photographer.post(
        f"{url}/api/events/{event['id']}/photos", files=[("files", ("again.jpg", photos["obama.jpg"]))]
    ).json()["photos"][0]
    assert again["status"] == "duplicate" and again["photo_id"] == ids["obama.jpg"]

    # deleting a selfie removes the face data and the matches
    assert alice.delete(f"{url}/api/events/{event['id']}/selfie").status_code == 204
    gone = alice.get(f"{url}/api/my-photos", params={"event_id": event["id"]}).json()
    assert gone["photos"] == [] and alice.get(f"{url}/api/photos/{ids['obama.jpg']}").status_code in (403, 404)
