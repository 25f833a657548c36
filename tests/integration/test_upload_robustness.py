"""Uploads that must not be refused or lost (issue 13): JPEGs whose metadata passes 64 KiB (item 8),
one file's storage or database error in a multi-file upload (item 15)."""

from __future__ import annotations

import io

import pytest

from tests.images import compose, head_crop, jpeg, with_metadata_segments


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def photographer(make_user):  # type: ignore[no-untyped-def]
    return make_user("photographer")[1]


@pytest.fixture
def event_id(client, photographer) -> int:  # type: ignore[no-untyped-def]
    return client.post("/api/events", json={"name": "Gala"}, headers=auth(photographer)).json["id"]


def upload(client, token, event_id, files):  # type: ignore[no-untyped-def]
    data = {"files": [(io.BytesIO(content), name) for name, content in files]}
    return client.post(
        f"/api/events/{event_id}/photos", data=data, headers=auth(token), content_type="multipart/form-data"
    )


def test_a_jpeg_with_180_kb_of_metadata_is_queued_with_its_size(client, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    resp = upload(client, photographer, event_id, [("export.jpg", with_metadata_segments(jpeg(640, 480)))])
    assert resp.status_code == 202
    (result,) = resp.json["photos"]
    assert result["status"] == "queued", result
    photo = client.get(f"/api/photos/{result['photo_id']}", headers=auth(photographer)).json
    assert (photo["width"], photo["height"]) == (640, 480)


def test_a_selfie_with_large_metadata_is_accepted(client, make_user, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    code = client.get(f"/api/events/{event_id}", headers=auth(photographer)).json["access_code"]
    _, attendee = make_user("attendee")
    client.post(f"/api/events/{event_id}/join", json={"access_code": code}, headers=auth(attendee))
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(with_metadata_segments(jpeg(seed=3))), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202, resp.json


@pytest.mark.slow
def test_a_photo_with_180_kb_of_app2_ends_done_with_its_face_over_http(env, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.test_end_to_end import new_account, wait_for

    url = processes.web()
    processes.worker("metadata-worker")
    photographer = new_account(env, "pho@example.com", "photographer")
    event = photographer.post(f"{url}/api/events", json={"name": "Exports"}).json()
    data = with_metadata_segments(compose([head_crop(face_images / "obama.jpg")], size=(900, 700), seed=1))
    resp = photographer.post(f"{url}/api/events/{event['id']}/photos", files=[("files", ("lr-export.jpg", data))])
    assert resp.status_code == 202
    (result,) = resp.json()["photos"]
    assert result["status"] == "queued", result
    photo = wait_for(
        lambda: (
            (p := photographer.get(f"{url}/api/photos/{result['photo_id']}").json())["status"]
            not in ("queued", "processing")
            and p
        ),
        90,
        "the photo",
    )
    assert photo["status"] == "done", photo
    assert len(photo["faces"]) == 1
