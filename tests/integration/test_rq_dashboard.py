"""rq-dashboard at /admin/rq: admins only (every route, static files and JSON), no state-changing
GET, its pages escape what jobs carry and send the CSRF token with their POSTs."""

from __future__ import annotations

import redis as redis_lib
from rq import Queue


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PATHS = [
    "/admin/rq/",
    "/admin/rq/0/view/workers",
    "/admin/rq/0/data/queues.json",
    "/admin/rq/0/data/workers.json",
    "/admin/rq/static/js/jquery-3.5.1.min.js",
]


def test_rq_dashboard_is_for_admins_only(client, make_user) -> None:  # type: ignore[no-untyped-def]
    for path in PATHS:
        resp = client.get(path, headers={"Accept": "application/json"})
        assert resp.status_code == 401, path
        assert client.get(path, headers={"Accept": "text/html"}).status_code in (302, 401), path
    for role in ("attendee", "photographer"):
        _, token = make_user(role)
        for path in PATHS:
            assert client.get(path, headers=auth(token)).status_code == 403, (role, path)
        assert client.post("/admin/rq/requeue/photos", headers=auth(token)).status_code == 403
        assert client.post("/admin/rq/queue/photos/queued/empty", headers=auth(token)).status_code == 403
    _, admin = make_user("admin")
    for path in PATHS:
        assert client.get(path, headers=auth(admin)).status_code == 200, path


def test_actions_need_post_and_pages_escape_and_carry_the_token(client, make_user, redis_url) -> None:  # type: ignore[no-untyped-def]
    _, admin = make_user("admin")
    queue = Queue("photos", connection=redis_lib.Redis.from_url(redis_url))
    queue.enqueue("jobs.photo.process_photo_job", 1, description='<img src=x onerror="alert(1)">')
    assert client.get("/admin/rq/requeue/photos", headers=auth(admin)).status_code == 405
    page = client.get("/admin/rq/0/view/jobs/photos/queued/8/asc/1", headers=auth(admin))
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="csrf-token"' in text
    assert "_.templateSettings.interpolate = /(.)^/g" in text
    assert text.index("underscore-umd-min.js") < text.index("_.templateSettings") < text.index("_.template(")
    assert client.post("/admin/rq/queue/photos/queued/empty", headers=auth(admin)).json == {"status": "OK"}
    assert queue.count == 0


def test_job_text_is_plain_in_the_json_and_escaped_once_by_the_pages(client, make_user, redis_url) -> None:  # type: ignore[no-untyped-def]
    """rq-dashboard's JSON carries a description as written; its jobs page escapes it once (our
    escaping <%= %>), not a second time with its own $('<div/>').text().html()."""
    _, admin = make_user("admin")
    name = "Tom's & Jerry's.jpg"
    queue = Queue("photos", connection=redis_lib.Redis.from_url(redis_url))
    job = queue.enqueue("jobs.schedules.record_queue_history", description=f"photo 1 ({name})")
    listed = client.get("/admin/rq/0/data/jobs/photos/queued/8/asc/1.json", headers=auth(admin)).json
    assert [j["description"] for j in listed["jobs"]] == [f"photo 1 ({name})"]
    assert client.get(f"/admin/rq/0/data/job/{job.id}.json", headers=auth(admin)).json["description"] == (
        f"photo 1 ({name})"
    )
    page = client.get("/admin/rq/0/view/jobs/photos/queued/8/asc/1", headers=auth(admin)).get_data(as_text=True)
    assert '<span class="description ellipsify"><%= d.description %></span>' in page
    assert '<pre class="exc_info"><%= d.exc_info %></pre>' in page
    assert ".text(d." not in page
