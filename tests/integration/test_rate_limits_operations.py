"""HTTP rate limits of uploads and my-photos: per user, configurable, 429 + Retry-After + JSON."""

from __future__ import annotations

import io

import pytest

from snapmatch import settings
from tests.images import jpeg


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def limited_client(env, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("UPLOAD_RATE_LIMIT", "3/minute")
    monkeypatch.setenv("MY_PHOTOS_RATE_LIMIT", "4/minute")
    settings.get_settings.cache_clear()
    from webapp import create_app

    return create_app({"TESTING": True}).test_client()


def _assert_limited(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 429, resp.get_data(as_text=True)
    assert resp.json["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_uploads_and_my_photos_are_limited_per_user_at_the_configured_rates(limited_client, make_user) -> None:  # type: ignore[no-untyped-def]
    client = limited_client
    _, photographer = make_user("photographer")
    _, other_photographer = make_user("photographer")
    event = client.post("/api/events", json={"name": "Limits"}, headers=auth(photographer)).json

    def upload(token: str, seed: int):  # type: ignore[no-untyped-def]
        data = {
            "files": [
                (io.BytesIO(jpeg(64, 64, seed=seed)), f"{seed}.jpg"),
                (io.BytesIO(jpeg(64, 64, seed=seed + 500)), "b.jpg"),
            ]
        }
        return client.post(
            f"/api/events/{event['id']}/photos", data=data, headers=auth(token), content_type="multipart/form-data"
        )

    for seed in range(3):  # three requests of two files each: the limit counts requests
        assert upload(photographer, seed).status_code == 202
    _assert_limited(upload(photographer, 10))
    # Another photographer has a budget of their own (the event is not theirs: 404, not 429).
    assert upload(other_photographer, 11).status_code == 404

    _, attendee = make_user("attendee")
    joined = client.post(
        f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth(attendee)
    )
    assert joined.status_code == 200
    for _ in range(4):
        assert client.get(f"/api/my-photos?event_id={event['id']}", headers=auth(attendee)).status_code == 200
    _assert_limited(client.get(f"/api/my-photos?event_id={event['id']}", headers=auth(attendee)))
    _, other_attendee = make_user("attendee")
    other = client.get(f"/api/my-photos?event_id={event['id']}", headers=auth(other_attendee))
    assert other.status_code == 403  # not joined, but not rate limited
