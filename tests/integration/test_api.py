"""The HTTP contract through the Flask app, on SQLite and PostgreSQL, with real Redis (no workers)."""

from __future__ import annotations

import hashlib
import io

import pytest
import redis as redis_lib
from rq import Queue

from tests.images import bad_uploads, jpeg, photo_as


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def photographer(make_user):  # type: ignore[no-untyped-def]
    return make_user("photographer")[1]


@pytest.fixture
def event_id(client, photographer) -> int:  # type: ignore[no-untyped-def]
    resp = client.post("/api/events", json={"name": "Marathon"}, headers=auth(photographer))
    assert resp.status_code == 201, resp.json
    assert set(resp.json) >= {"id", "name", "access_code"}
    return resp.json["id"]


def upload(client, token, event_id, files, **form):  # type: ignore[no-untyped-def]
    data = {"files": [(io.BytesIO(content), name) for name, content in files], **form}
    return client.post(
        f"/api/events/{event_id}/photos", data=data, headers=auth(token), content_type="multipart/form-data"
    )


def test_auth_is_required_and_checked(client, event_id, make_user) -> None:  # type: ignore[no-untyped-def]
    assert client.get(f"/api/events/{event_id}").status_code == 401
    resp = client.get(f"/api/events/{event_id}", headers=auth("smk_not-a-token"))
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"
    _, attendee = make_user("attendee")
    resp = client.post("/api/events", json={"name": "x"}, headers=auth(attendee))
    assert resp.status_code == 403 and resp.json["error"]["code"] == "role_required"
    _, other = make_user("photographer")
    assert client.get(f"/api/events/{event_id}", headers=auth(other)).status_code == 404


def test_upload_is_acknowledged_queued_and_deduplicated(client, photographer, event_id, redis_url) -> None:  # type: ignore[no-untyped-def]
    first, second = jpeg(seed=1), jpeg(seed=2)
    resp = upload(client, photographer, event_id, [("a.jpg", first), ("b.jpg", second)])
    assert resp.status_code == 202
    body = resp.json
    assert [p["status"] for p in body["photos"]] == ["queued", "queued"]
    assert all(p["photo_id"] and p["job_id"] for p in body["photos"])
    queue = Queue("photos", connection=redis_lib.Redis.from_url(redis_url))
    assert sorted(queue.job_ids) == sorted(p["job_id"] for p in body["photos"])

    again = upload(client, photographer, event_id, [("a-copy.jpg", first)], batch_id=body["batch_id"])
    assert again.json["photos"][0]["status"] == "duplicate"
    assert again.json["photos"][0]["photo_id"] == body["photos"][0]["photo_id"]
    assert again.json["batch_id"] == body["batch_id"]

    batch = client.get(f"/api/batches/{body['batch_id']}", headers=auth(photographer)).json
    assert batch["counts"] == {"queued": 2} and len(batch["photos"]) == 2
    event = client.get(f"/api/events/{event_id}", headers=auth(photographer)).json
    assert event["photo_counts"] == {"queued": 2}

    check = client.post(
        f"/api/events/{event_id}/photos/check",
        json={"sha256": [hashlib.sha256(first).hexdigest(), "0" * 64]},
        headers=auth(photographer),
    ).json
    assert check == {"present": [hashlib.sha256(first).hexdigest()], "missing": ["0" * 64]}


def test_every_kind_of_bad_upload_gets_a_specific_code(client, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    cases = bad_uploads()
    resp = upload(client, photographer, event_id, [(name, data) for name, data, _ in cases.values()])
    assert resp.status_code == 202
    results = resp.json["photos"]
    assert len(results) == len(cases) >= 8
    for (kind, (_name, _data, code)), result in zip(cases.items(), results, strict=True):
        assert result["status"] == "rejected", kind
        assert result["error"]["code"] == code, kind
        assert result["error"]["message"]
    # nothing was recorded for rejected files
    event = client.get(f"/api/events/{event_id}", headers=auth(photographer)).json
    assert event["photos_total"] == 0


def test_oversized_file_is_rejected_without_being_kept(client, photographer, event_id, app) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], MAX_UPLOAD_MB=1)
    big = jpeg(2400, 1800, quality=100)
    assert len(big) > 1 << 20
    resp = upload(client, photographer, event_id, [("big.jpg", big)])
    assert resp.status_code == 202, resp.json
    result = resp.json["photos"][0]
    assert result["status"] == "rejected" and result["error"]["code"] == "file_too_large"


def test_uploads_are_stored_intact_and_leave_no_temp_files(client, photographer, event_id, app) -> None:  # type: ignore[no-untyped-def]
    """Parts are spooled straight from the body (large bodies through the 1 MiB reader): the stored
    original is the uploaded bytes, and no temp file outlives its request, even a failed one."""
    import os

    tmp_dir = app.config["UPLOAD_TMP_DIR"]
    small, big = jpeg(320, 240, seed=11), jpeg(2400, 1800, quality=100, seed=12)
    assert len(big) > 1 << 20  # takes the large-body path
    resp = upload(client, photographer, event_id, [("small.jpg", small), ("big.jpg", big)])
    assert resp.status_code == 202
    for result, data in zip(resp.json["photos"], (small, big), strict=True):
        assert result["status"] == "queued"
        photo = client.get(f"/api/photos/{result['photo_id']}/original", headers=auth(photographer))
        assert photo.status_code == 200 and photo.data == data
    # The body is parsed (parts spooled), then the request fails on its batch id.
    another = [("big2.jpg", jpeg(2400, 1800, quality=100, seed=13))]
    resp = upload(client, photographer, event_id, another, batch_id="x" * 99)
    assert resp.status_code == 400, resp.json
    assert os.listdir(tmp_dir) == []


def test_web_start_removes_spools_a_killed_process_left(app) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from webapp import create_app

    tmp_dir = app.config["UPLOAD_TMP_DIR"]
    os.makedirs(tmp_dir, exist_ok=True)
    old, fresh, other = (os.path.join(tmp_dir, n) for n in ("upload-old", "upload-fresh", "keep-me"))
    for path in (old, fresh, other):
        with open(path, "wb") as f:
            f.write(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(other, (two_hours_ago, two_hours_ago))
    create_app({"TESTING": True})
    assert sorted(os.listdir(tmp_dir)) == ["keep-me", "upload-fresh"]


def test_png_and_large_webp_uploads_are_queued(client, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    webp = photo_as("WEBP", 2000, 1500, seed=21, quality=90)
    files = [("a.webp", webp), ("b.png", photo_as("PNG", 800, 600, seed=22))]
    resp = upload(client, photographer, event_id, files)
    assert resp.status_code == 202
    assert [p["status"] for p in resp.json["photos"]] == ["queued", "queued"], resp.json


def test_no_files_and_bad_json_get_clear_errors(client, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(f"/api/events/{event_id}/photos", data={}, headers=auth(photographer))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "no_files"
    resp = client.post(f"/api/events/{event_id}/photos/check", json={"sha256": "x"}, headers=auth(photographer))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_body"
    resp = client.post("/api/events", json={"name": ""}, headers=auth(photographer))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_name"


def test_full_queue_answers_503_and_stores_nothing(client, photographer, event_id, app, redis_url) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], PHOTO_QUEUE_MAX_SIZE=2)
    assert upload(client, photographer, event_id, [("a.jpg", jpeg(seed=1)), ("b.jpg", jpeg(seed=2))]).status_code == 202
    resp = upload(client, photographer, event_id, [("c.jpg", jpeg(seed=3))])
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "queue_full"
    assert int(resp.headers["Retry-After"]) > 0
    assert client.get(f"/api/events/{event_id}", headers=auth(photographer)).json["photos_total"] == 2


def test_join_selfie_and_privacy_rules(client, photographer, event_id, make_user) -> None:  # type: ignore[no-untyped-def]
    code = client.get(f"/api/events/{event_id}", headers=auth(photographer)).json["access_code"]
    _, attendee = make_user("attendee")
    resp = client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee))
    assert resp.status_code == 403 and resp.json["error"]["code"] == "not_joined"
    wrong = client.post(f"/api/events/{event_id}/join", json={"access_code": "NOPE"}, headers=auth(attendee))
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "wrong_access_code"
    assert (
        client.post(
            f"/api/events/{event_id}/join", json={"access_code": code.lower()}, headers=auth(attendee)
        ).status_code
        == 200
    )
    assert client.get(f"/api/events/{event_id}/selfie", headers=auth(attendee)).status_code == 404
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(b"not an image"), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 415 and resp.json["error"]["code"] == "unsupported_type"
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=5)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202
    assert client.get(f"/api/events/{event_id}/selfie", headers=auth(attendee)).json["status"] == "processing"
    mine = client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee)).json
    assert mine == {"status": "processing", "photos": [], "maybe": []}
    # an attendee never sees a photo they are not in
    photo_id = upload(client, photographer, event_id, [("p.jpg", jpeg(seed=6))]).json["photos"][0]["photo_id"]
    assert client.get(f"/api/photos/{photo_id}", headers=auth(attendee)).status_code == 404
    assert client.get(f"/api/photos/{photo_id}/original", headers=auth(attendee)).status_code == 404
    assert client.get(f"/api/photos/{photo_id}", headers=auth(photographer)).json["status"] == "queued"
    assert client.delete(f"/api/events/{event_id}/selfie", headers=auth(attendee)).status_code == 204
    assert client.get(f"/api/events/{event_id}/selfie", headers=auth(attendee)).status_code == 404


def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"redis": "ok", "database": "ok"}


def test_admin_sees_provider_limits_and_others_do_not(client, make_user, photographer) -> None:  # type: ignore[no-untyped-def]
    _, admin = make_user("admin")
    resp = client.get("/api/admin/providers", headers=auth(admin))
    assert resp.status_code == 200
    rekognition = resp.json["providers"]["rekognition"]
    assert rekognition["limiter"]["in_flight"] == 0
    assert rekognition["limiter"]["limits"]["concurrency"] == 5
    assert "gemini" in resp.json["providers"]
    denied = client.get("/api/admin/providers", headers=auth(photographer))
    assert denied.status_code == 403 and denied.json["error"]["code"] == "role_required"


def test_odd_requests_get_4xx_not_5xx(client, photographer, event_id) -> None:  # type: ignore[no-untyped-def]
    huge = 10**30
    assert client.get(f"/api/photos/{huge}", headers=auth(photographer)).status_code == 404
    assert client.get(f"/api/events/{huge}", headers=auth(photographer)).status_code == 404
    resp = client.post("/api/events", json=["not", "an", "object"], headers=auth(photographer))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_json"
    resp = client.post("/api/events", data="{broken", content_type="application/json", headers=auth(photographer))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_json"
    resp = client.delete(f"/api/events/{event_id}", headers=auth(photographer))
    assert resp.status_code == 405 and resp.json["error"]["code"] == "method_not_allowed"
    assert client.get("/api/nothing-here").json["error"]["code"] == "not_found"
    batch = upload(client, photographer, event_id, [("a.jpg", jpeg(seed=3))]).json["batch_id"]
    resp = client.get(f"/api/batches/{batch}/events", headers={**auth(photographer), "Last-Event-ID": "x; DROP"})
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_event_id"


def test_upload_publishes_received_and_queued_progress(client, photographer, event_id, redis_url) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import progress

    body = upload(client, photographer, event_id, [("a.jpg", jpeg(seed=8)), ("bad.jpg", b"")]).json
    events = [e for _, e in progress.read(redis_lib.Redis.from_url(redis_url), body["batch_id"])]
    good = body["photos"][0]["photo_id"]
    assert [(e["stage"], e["photoId"], e.get("status")) for e in events] == [
        ("ingestion:received", good, "queued"),
        ("ingestion:received", None, "rejected"),
        ("photo:queued", good, None),
    ]
