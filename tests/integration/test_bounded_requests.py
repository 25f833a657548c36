"""Bounded requests, numbers parsed in one place, and /readyz without internals (issue 13, items 4,
5 and 9), through the Flask app on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from tests.images import jpeg


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def event(client, make_user):  # type: ignore[no-untyped-def]
    _, photographer = make_user("photographer")
    body = client.post("/api/events", json={"name": "Gala"}, headers=auth(photographer)).json
    return {"id": body["id"], "code": body["access_code"], "photographer": photographer}


@pytest.fixture
def attendee(client, make_user, event):  # type: ignore[no-untyped-def]
    _, token = make_user("attendee")
    joined = client.post(f"/api/events/{event['id']}/join", json={"access_code": event["code"]}, headers=auth(token))
    assert joined.status_code == 200
    return token


class Untouchable(io.RawIOBase):
    """A request body of ``size`` bytes that fails the test if anyone reads it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: 0, 1: self.position, 2: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        raise AssertionError("the body was read")


def test_a_large_json_body_is_refused_from_content_length_before_reading(client, event, attendee) -> None:  # type: ignore[no-untyped-def]
    resp = client.post(
        f"/api/events/{event['id']}/join",
        input_stream=Untouchable(100 << 20),
        headers={**auth(attendee), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413 and resp.json["error"]["code"] == "request_too_large"
    padded = json.dumps({"access_code": event["code"], "pad": "x" * (64 << 10)})
    resp = client.post(
        f"/api/events/{event['id']}/join", data=padded, headers={**auth(attendee), "Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    small = client.post(f"/api/events/{event['id']}/join", json={"access_code": event["code"]}, headers=auth(attendee))
    assert small.status_code == 200


def test_the_json_limit_is_a_setting(client, app, event, attendee) -> None:  # type: ignore[no-untyped-def]
    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], JSON_MAX_BYTES=100)
    resp = client.post(f"/api/events/{event['id']}/join", json={"access_code": "x" * 200}, headers=auth(attendee))
    assert resp.status_code == 413


def test_a_chunked_body_is_cut_off_past_the_limit(client, event, attendee) -> None:  # type: ignore[no-untyped-def]
    body = io.BytesIO(b'{"access_code": "' + b"x" * (200 << 10) + b'"}')
    resp = client.post(
        f"/api/events/{event['id']}/join",
        input_stream=body,
        headers={**auth(attendee), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert resp.status_code == 413 and resp.json["error"]["code"] == "request_too_large"
    assert body.tell() <= (64 << 10) + (64 << 10)  # stopped within a read of the limit


def test_json_routes_parse_only_json(client, event, attendee, app) -> None:  # type: ignore[no-untyped-def]
    """A multipart body to a JSON route is a 415, and its parts are never spooled to files."""
    opened: list[int] = []
    request_class = app.request_class
    original = request_class._get_file_stream

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(1)
        return original(self, *args, **kwargs)

    request_class._get_file_stream = counting
    try:
        files = {f"f{i}": (io.BytesIO(b"x"), f"{i}.txt") for i in range(200)}
        resp = client.post(
            f"/api/events/{event['id']}/join",
            data={"access_code": event["code"], **files},
            headers=auth(attendee),
            content_type="multipart/form-data",
        )
        assert resp.status_code == 415 and resp.json["error"]["code"] == "unsupported_media_type"
        form = client.post(
            f"/api/events/{event['id']}/join", data={"access_code": event["code"]}, headers=auth(attendee)
        )
        assert form.status_code == 415
    finally:
        request_class._get_file_stream = original
    assert opened == []


def test_a_cookie_request_with_many_parts_to_a_json_route_is_refused_before_spooling(client, event, make_user) -> None:  # type: ignore[no-untyped-def]
    """CSRF reads the form of cookie requests: the part limit of a JSON route still holds."""
    from tests.integration.test_signin import sign_in

    email, _ = make_user("attendee")
    sign_in(client, email)
    files = {f"f{i}": (io.BytesIO(b"x"), f"{i}.txt") for i in range(100)}
    resp = client.post(f"/api/events/{event['id']}/join", data=files, content_type="multipart/form-data")
    assert resp.status_code == 413


def test_a_selfie_is_bounded_by_the_per_file_limit(client, app, event, attendee) -> None:  # type: ignore[no-untyped-def]
    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], MAX_UPLOAD_MB=1)
    resp = client.put(
        f"/api/events/{event['id']}/selfie",
        input_stream=Untouchable(3 << 20),
        headers={**auth(attendee), "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 413 and resp.json["error"]["code"] == "request_too_large"
    ok = client.put(
        f"/api/events/{event['id']}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=5)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert ok.status_code == 202


def test_photo_uploads_keep_their_larger_limit(client, app, event) -> None:  # type: ignore[no-untyped-def]
    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], MAX_UPLOAD_MB=1)
    files = {"files": [(io.BytesIO(jpeg(1400, 1000, quality=85, seed=s)), f"{s}.jpg") for s in range(4)]}
    resp = client.post(
        f"/api/events/{event['id']}/photos",
        data=files,
        headers=auth(event["photographer"]),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202 and [p["status"] for p in resp.json["photos"]] == ["queued"] * 4
    too_big = client.post(
        f"/api/events/{event['id']}/photos",
        input_stream=Untouchable(21 << 20),
        headers={**auth(event["photographer"]), "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert too_big.status_code == 413


@pytest.mark.parametrize(
    "query",
    [
        "event_id=²",
        "event_id=99999999999999999999999",
        "event_id=-1",
        "event_id=1.5",
        "event_id=%EF%BC%91",  # fullwidth digit one
        "event_id={id}&page=99999999999999999999",
        "event_id={id}&page=0",
        "event_id={id}&per_page=100000",
        "event_id={id}&per_page=x",
    ],
)
def test_odd_numbers_answer_400_with_a_code(client, event, attendee, query) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/my-photos", "/api/all-photos"):
        resp = client.get(f"{path}?{query.format(id=event['id'])}", headers=auth(attendee))
        if "page" in query and path == "/api/my-photos":
            continue  # my-photos has no paging
        assert resp.status_code == 400, (path, query, resp.json)
        assert resp.json["error"]["code"] == "invalid_parameter"


def test_a_missing_event_id_is_a_400_with_a_code(client, attendee) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/api/my-photos", headers=auth(attendee))
    assert resp.status_code == 400 and resp.json["error"]["code"] == "missing_parameter"


def test_paging_within_bounds_works(client, event, attendee) -> None:  # type: ignore[no-untyped-def]
    resp = client.get(f"/api/all-photos?event_id={event['id']}&page=100000&per_page=200", headers=auth(attendee))
    assert resp.status_code == 200 and resp.json["photos"] == []


def test_readyz_says_ok_or_error_and_nothing_more(client, app) -> None:  # type: ignore[no-untyped-def]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"redis": "ok", "database": "ok"}
    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], REDIS_URL="redis://127.0.0.1:1/0")
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json == {"status": "not_ready", "checks": {"redis": "error", "database": "ok"}}
    assert "127.0.0.1" not in down.get_data(as_text=True)
