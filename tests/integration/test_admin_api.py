"""The admin API on a real Redis and both databases: stats, job reports, requeue through the
database (never twice), pause/resume, status, and that only admins get any of it."""

from __future__ import annotations

import io

import pytest
import redis as redis_lib
from rq import Queue
from sqlalchemy import select

from jobs.queues import PausableQueue, paused_queue_names
from snapmatch import db
from snapmatch.pipeline import mark_photo_failed
from snapmatch.schema import PhotoStatus, photos
from tests.images import jpeg


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(make_user) -> str:  # type: ignore[no-untyped-def]
    return make_user("admin")[1]


@pytest.fixture
def uploaded(client, make_user) -> list[int]:  # type: ignore[no-untyped-def]
    """Three photos uploaded (queued, no workers running)."""
    _, photographer = make_user("photographer")
    event_id = client.post("/api/events", json={"name": "Run"}, headers=auth(photographer)).json["id"]
    data = {"files": [(io.BytesIO(jpeg(seed=i)), f"p{i}.jpg") for i in range(3)]}
    resp = client.post(
        f"/api/events/{event_id}/photos", data=data, headers=auth(photographer), content_type="multipart/form-data"
    )
    assert resp.status_code == 202
    return [p["photo_id"] for p in resp.json["photos"]]


def _row(photo_id: int):  # type: ignore[no-untyped-def]
    with db.connection() as conn:
        return conn.execute(select(photos).where(photos.c.id == photo_id)).first()


def test_only_admins_reach_the_admin_api(client, make_user) -> None:  # type: ignore[no-untyped-def]
    paths = ["/api/admin/queue/stats", "/api/status", "/api/admin/providers", "/api/admin/failures", "/admin"]
    for role in ("attendee", "photographer"):
        _, token = make_user(role)
        for path in paths:
            assert client.get(path, headers=auth(token)).status_code == 403, path
        assert (
            client.post("/api/admin/queue/failed/requeue", json={"all": True}, headers=auth(token)).status_code == 403
        )
    for path in paths:
        assert client.get(path).status_code in (401, 302), path


def test_stats_count_what_rq_holds(client, admin, uploaded) -> None:  # type: ignore[no-untyped-def]
    stats = client.get("/api/admin/queue/stats", headers=auth(admin)).json
    photos_queue = stats["queues"]["photos"]
    assert photos_queue["queued"] == 3 and photos_queue["started"] == 0 and photos_queue["failed"] == 0
    assert photos_queue["oldest_waiting_seconds"] is not None and photos_queue["oldest_waiting_seconds"] >= 0
    assert set(photos_queue) >= {
        "scheduled",
        "deferred",
        "finished",
        "workers",
        "busy_workers",
        "utilisation",
        "throughput_per_minute",
        "median_duration_seconds",
        "p95_duration_seconds",
        "success_rate",
    }
    status = client.get("/api/status", headers=auth(admin)).json
    assert status["queue_depth"]["photos"] == 3 and status["workers"] == 0
    job = client.get(f"/api/admin/queue/jobs/photo-{uploaded[0]}-0", headers=auth(admin)).json
    assert job["status"] == "queued" and job["queue"] == "photos" and job["attempts"] == 1
    assert client.get("/api/admin/queue/jobs/nope", headers=auth(admin)).status_code == 404


def test_requeue_goes_through_the_database_and_never_twice(client, admin, uploaded, redis_url) -> None:  # type: ignore[no-untyped-def]
    first, second, third = uploaded
    mark_photo_failed(first, "processing_error")
    mark_photo_failed(second, "aws_timeout", status=PhotoStatus.QUOTA_EXCEEDED)
    mark_photo_failed(third, "budget_exceeded", status=PhotoStatus.QUOTA_EXCEEDED)
    queue = Queue("photos", connection=redis_lib.Redis.from_url(redis_url))
    queue.empty()

    failures = client.get("/api/admin/failures", headers=auth(admin)).json
    assert {p["photo_id"] for p in failures["photos"]} == set(uploaded)
    assert {(r["status"], r["error_code"]) for r in failures["by_reason"]} == {
        ("failed", "processing_error"),
        ("quota_exceeded", "aws_timeout"),
        ("quota_exceeded", "budget_exceeded"),
    }

    def requeue(body):  # type: ignore[no-untyped-def]
        resp = client.post("/api/admin/queue/failed/requeue", json=body, headers=auth(admin))
        assert resp.status_code == 200, resp.json
        return resp.json["requeued"]

    assert requeue({"job_id": f"photo-{first}-0"}) == 1
    assert requeue({"job_id": f"photo-{first}-0"}) == 0  # the same click again: nothing
    assert _row(first).status == "queued" and _row(first).enqueue_count == 1 and _row(first).error_code is None
    assert queue.job_ids == [f"photo-{first}-1"]

    assert requeue({"status": "budget_exceeded"}) == 1
    assert _row(third).status == "queued" and _row(second).status == "quota_exceeded"
    assert requeue({"error_code": "aws_timeout"}) == 1
    assert requeue({"all": True}) == 0
    assert sorted(queue.job_ids) == sorted([f"photo-{first}-1", f"photo-{second}-1", f"photo-{third}-1"])

    bad = client.post("/api/admin/queue/failed/requeue", json={"status": "done"}, headers=auth(admin))
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_parameter"
    assert client.post("/api/admin/queue/failed/requeue", json={}, headers=auth(admin)).status_code == 400
    bad_ids = client.post("/api/admin/queue/failed/requeue", json={"photo_ids": ["one"]}, headers=auth(admin))
    assert bad_ids.status_code == 400


def test_a_paused_queue_is_left_alone_by_the_worker_dequeue(client, admin, uploaded, redis_url) -> None:  # type: ignore[no-untyped-def]
    r = redis_lib.Redis.from_url(redis_url)
    assert client.post("/api/admin/queue/photos/pause", headers=auth(admin)).json == {"queue": "photos", "paused": True}
    assert paused_queue_names(r) == {"photos"}
    queues = [PausableQueue(n, connection=r) for n in ("selfies", "maintenance", "photos")]
    assert PausableQueue.dequeue_any(queues, None, connection=r) is None
    assert client.get("/api/admin/queue/stats", headers=auth(admin)).json["queues"]["photos"]["paused"] is True
    client.post("/api/admin/queue/photos/resume", headers=auth(admin))
    job, queue = PausableQueue.dequeue_any(queues, None, connection=r)
    assert queue.name == "photos" and job.id == f"photo-{uploaded[0]}-0"
    assert client.post("/api/admin/queue/nope/pause", headers=auth(admin)).status_code == 404
