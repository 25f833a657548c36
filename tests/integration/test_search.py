"""Search by bib number and words over the HTTP API (SQLite fallback and PostgreSQL full-text search): exactly
the photos whose analysis has it, and an attendee never gets a photo they may not see. The analyses are made
by the real pipeline (RQ SimpleWorker, google-genai client, loopback Gemini server)."""

from __future__ import annotations

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker
from sqlalchemy import insert, select

from tests.fakes.gemini_server import API_KEY, GeminiFake, coded_photo
from tests.workload import ingest_all


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gemini_env(env, monkeypatch):  # type: ignore[no-untyped-def]
    from jobs import analysis, runtime
    from snapmatch import settings

    with GeminiFake(seed=1) as fake:
        for name, value in {
            "GEMINI_API_KEY": API_KEY,
            "GEMINI_BASE_URL": fake.base_url,
            "GEMINI_REQUESTS_PER_MINUTE": "6000",
        }.items():
            monkeypatch.setenv(name, value)
        settings.get_settings.cache_clear()
        runtime.get_runtime.cache_clear()
        analysis.get_analyzer.cache_clear()
        yield env
        analysis.get_analyzer.cache_clear()


@pytest.fixture
def world(gemini_env, client, make_user, redis_url):  # type: ignore[no-untyped-def]
    """Two events; in the first, an attendee whose selfie matched photos 1 and 2 only."""
    from snapmatch import accounts, db, events
    from snapmatch.schema import faces, matches, selfies

    owner_email, owner_token = make_user("photographer")
    attendee_email, attendee_token = make_user("attendee")
    _, stranger_token = make_user("attendee")
    owner = accounts.find_user(owner_email)
    event = events.create_event(owner, "Marathon")
    other_event = events.create_event(owner, "Other race")
    ids = ingest_all(
        [
            coded_photo(["101"], seed=1),
            coded_photo(["101", "202"], ["medal"], seed=2),
            coded_photo(["202"], ["cake"], seed=3),
            coded_photo([], ["podium", "cake"], seed=4),
            coded_photo(["1010"], seed=5),
        ],
        event,
    )
    [other_id] = ingest_all([coded_photo(["101"], ["podium"], seed=6)], other_event)
    connection = redis_lib.Redis.from_url(redis_url)
    queues = [Queue(name, connection=connection) for name in ("photos", "analysis")]
    SimpleWorker(queues, connection=connection).work(burst=True)

    attendee = accounts.find_user(attendee_email)
    events.join_event(attendee, event.id, event.access_code)
    now = db.utcnow()
    with db.transaction() as conn:
        selfie_id = conn.execute(
            insert(selfies).values(
                event_id=event.id, user_id=attendee.id, image_key="k", status="ready", created_at=now, updated_at=now
            )
        ).inserted_primary_key[0]
        for photo_id in ids[1:3]:
            face_id = conn.execute(
                insert(faces).values(
                    photo_id=photo_id,
                    event_id=event.id,
                    face_index=9,
                    left=0,
                    top=0,
                    width=1,
                    height=1,
                    score=1.0,
                    embedding=b"",
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(matches).values(
                    selfie_id=selfie_id, face_id=face_id, photo_id=photo_id, event_id=event.id, distance=0.3
                )
            )
    return {
        "event": event,
        "ids": ids,
        "other_id": other_id,
        "owner": owner_token,
        "attendee": attendee_token,
        "attendee_user": attendee,
        "stranger": stranger_token,
    }


def _search(client, token, event_id, q, **params):  # type: ignore[no-untyped-def]
    resp = client.get(f"/api/events/{event_id}/search", query_string={"q": q, **params}, headers=auth(token))
    return resp


def _ids(resp) -> list[int]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.json
    return [p["photo_id"] for p in resp.json["photos"]]


def test_bib_numbers_match_exactly_and_words_match_tags_and_captions(client, world) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import photo_numbers

    p = world["ids"]
    owner, event_id = world["owner"], world["event"].id
    with db.connection() as conn:
        having_101 = set(
            conn.execute(select(photo_numbers.c.photo_id).where(photo_numbers.c.number == "101")).scalars()
        )
    assert having_101 == {p[0], p[1], world["other_id"]}
    assert _ids(_search(client, owner, event_id, "101")) == [p[0], p[1]], "exact: not 1010, not the other event"
    assert _ids(_search(client, owner, event_id, "1010")) == [p[4]]
    assert _ids(_search(client, owner, event_id, "101 202")) == [p[1]]
    assert _ids(_search(client, owner, event_id, "cake")) == [p[2], p[3]]
    assert _ids(_search(client, owner, event_id, "Podium CAKE")) == [p[3]]
    assert _ids(_search(client, owner, event_id, "202 medal")) == [p[1]]
    assert _ids(_search(client, owner, event_id, "999")) == []
    assert _ids(_search(client, owner, event_id, "runner")) == [p[0], p[1], p[2], p[4]]  # from the captions

    first = _search(client, owner, event_id, "cake", per_page=1)
    second = _search(client, owner, event_id, "cake", per_page=1, page=2)
    assert (first.json["total"], _ids(first), _ids(second)) == (2, [p[2]], [p[3]])
    assert first.json["photos"][0]["thumbnail_url"] == f"/api/photos/{p[2]}/thumbnail"


def test_an_attendee_never_gets_a_photo_they_may_not_see(client, world) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import db, events
    from snapmatch.schema import photos

    p, event_id, attendee = world["ids"], world["event"].id, world["attendee"]
    assert _ids(_search(client, attendee, event_id, "101")) == [p[1]]
    assert _ids(_search(client, attendee, event_id, "202")) == [p[1], p[2]]
    assert _ids(_search(client, attendee, event_id, "podium")) == []
    for q in ("101", "202", "1010", "cake", "podium", "runner", "event", "medal 101"):
        for photo_id in _ids(_search(client, attendee, event_id, q)):
            with db.connection() as conn:
                row = conn.execute(select(photos).where(photos.c.id == photo_id)).first()
            assert events.can_view_photo(world["attendee_user"], row), (q, photo_id)
    assert _search(client, world["stranger"], event_id, "101").status_code == 403
    assert client.get(f"/api/events/{event_id}/search", query_string={"q": "101"}).status_code == 401


def test_every_search_result_links_a_thumbnail_the_caller_may_open(client, world) -> None:  # type: ignore[no-untyped-def]
    """An attendee finds only photos matched to them (an earlier event-wide setting is gone: migration
    0010 drops it), and every thumbnail a search returns loads for whoever searched."""
    p, event_id = world["ids"], world["event"].id
    for who in ("attendee", "owner"):
        seen = set()
        for q in ("101", "202", "1010", "cake", "podium", "runner", "medal"):
            resp = _search(client, world[who], event_id, q)
            assert resp.json["total"] == len(resp.json["photos"]), (who, q)
            for photo in resp.json["photos"]:
                image = client.get(photo["thumbnail_url"], headers=auth(world[who]))
                assert image.status_code == 200 and image.mimetype.startswith("image/"), (who, q, photo)
                seen.add(photo["photo_id"])
        assert seen == ({p[1], p[2]} if who == "attendee" else set(p)), who
    assert _ids(_search(client, world["attendee"], event_id, "podium")) == []
    assert _ids(_search(client, world["attendee"], event_id, "101")) == [p[1]]


def test_the_owner_sets_the_analysis_mode_and_event_wide_search_is_refused(client, world) -> None:  # type: ignore[no-untyped-def]
    event_id = world["event"].id
    url = f"/api/events/{event_id}"
    assert client.patch(url, json={"analysis_mode": "batch"}, headers=auth(world["attendee"])).status_code == 404
    assert client.patch(url, json={"name": "x"}, headers=auth(world["owner"])).json["error"]["code"] == (
        "invalid_event_settings"
    )
    wide = client.patch(url, json={"search_event_wide": True}, headers=auth(world["owner"]))
    assert wide.status_code == 400 and wide.json["error"]["code"] == "event_wide_search_unavailable"

    resp = client.patch(url, json={"analysis_mode": "batch"}, headers=auth(world["owner"]))
    assert resp.status_code == 200 and resp.json == {"id": event_id, "analysis_mode": "batch"}
    assert client.patch(url, json={"analysis_mode": None}, headers=auth(world["owner"])).json["analysis_mode"] is None
    assert client.patch(url, json={"analysis_mode": "later"}, headers=auth(world["owner"])).status_code == 400


@pytest.mark.parametrize(
    "params,code",
    [
        ({"q": ""}, "missing_query"),
        ({"q": "x" * 300}, "query_too_long"),
        ({"q": "1", "page": "0"}, "invalid_parameter"),
        ({"q": "1", "page": "-1"}, "invalid_parameter"),
        ({"q": "1", "page": "99999999999"}, "invalid_parameter"),
        ({"q": "1", "per_page": "101"}, "invalid_parameter"),
        ({"q": "1", "per_page": "ten"}, "invalid_parameter"),
    ],
)
def test_bad_search_parameters_are_400_with_a_code(client, make_user, env, params, code) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import accounts, events

    email, token = make_user("photographer")
    event = events.create_event(accounts.find_user(email), "E")
    resp = client.get(f"/api/events/{event.id}/search", query_string=params, headers=auth(token))
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == code


def test_the_photo_shows_no_analysis_when_analysis_is_off(client, make_user, env) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import accounts, events

    email, token = make_user("photographer")
    [photo_id] = ingest_all([coded_photo(["1"], seed=9)], events.create_event(accounts.find_user(email), "E"))
    assert client.get(f"/api/photos/{photo_id}", headers=auth(token)).json["analysis"] is None
