"""Caches for my-photos, all-photos and event info: shared in Redis, never stale after a change."""

from __future__ import annotations

import redis as redis_lib

from snapmatch import cache, corrections


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _joined_attendee(client, make_user) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    _, photographer = make_user("photographer")
    event = client.post("/api/events", json={"name": "Gala"}, headers=auth(photographer)).json
    _, attendee = make_user("attendee")
    joined = client.post(
        f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth(attendee)
    )
    assert joined.status_code == 200
    return event["id"], attendee, photographer


def test_a_read_that_started_before_a_change_cannot_write_the_old_list_back(client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 item 17: the read loads the old list, a match commits and invalidates meanwhile,
    then the read stores its old list. The next read must still show the new match."""
    event_id, attendee, _ = _joined_attendee(client, make_user)
    new_list = [{"photo_id": 7, "thumbnail_url": "/api/photos/7/thumbnail", "similarity": 0.8}]
    calls = []

    def racing_read(user, eid):  # type: ignore[no-untyped-def]
        calls.append(eid)
        if len(calls) == 1:
            # A worker commits a match and invalidates while this read is between query and store.
            cache.invalidate_my_photos(
                redis_lib.Redis.from_url(client.application.config["SNAPMATCH"].REDIS_URL), eid, [user.id]
            )
            return {"photos": [], "maybe": []}
        return {"photos": new_list, "maybe": []}

    monkeypatch.setattr(corrections, "my_photos", racing_read)
    first = client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee))
    assert first.status_code == 200 and first.json["photos"] == []
    second = client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee))
    assert second.json["photos"] == new_list
    third = client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee))
    assert third.json["photos"] == new_list and len(calls) == 2  # the third read was a hit


def test_caches_count_hits_and_misses_and_clear_empties_them(client, make_user, redis_url) -> None:  # type: ignore[no-untyped-def]
    event_id, attendee, photographer = _joined_attendee(client, make_user)
    for _ in range(3):
        assert client.get(f"/api/my-photos?event_id={event_id}", headers=auth(attendee)).status_code == 200
        assert client.get(f"/api/all-photos?event_id={event_id}", headers=auth(attendee)).status_code == 200
    r = redis_lib.Redis.from_url(redis_url)
    stats = cache.stats(r)
    assert stats["my-photos"]["misses"] == 1 and stats["my-photos"]["hits"] == 2
    assert stats["all-photos"]["misses"] == 1 and stats["all-photos"]["hits"] == 2
    assert stats["event"]["hits"] >= 4
    _, admin = make_user("admin")
    assert client.post("/api/admin/cache/clear", headers=auth(photographer)).status_code == 403
    cleared = client.post("/api/admin/cache/clear", headers=auth(admin))
    assert cleared.status_code == 200 and cleared.json["cleared"] >= 3
    assert list(r.scan_iter(match="*cache:entry*")) == []
