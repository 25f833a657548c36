"""Odd inputs found by the schemathesis run (and probes beside it) answer 4xx with a code, never 500,
on SQLite and PostgreSQL (which refuses NUL in text and integers past 2**63-1)."""

from __future__ import annotations

import pytest


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def users(make_user):  # type: ignore[no-untyped-def]
    return auth(make_user("photographer")[1]), auth(make_user("attendee")[1])


@pytest.fixture
def event(client, users) -> dict:  # type: ignore[no-untyped-def]
    photographer, attendee = users
    event = client.post("/api/events", json={"name": "Odd inputs"}, headers=photographer).json
    joined = client.post(
        f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=attendee
    )
    assert joined.status_code == 200
    return event


def assert_error(resp, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.json["error"]["code"] == code


OUT_OF_RANGE_IDS = ["0", "01", "9223372036854775808", "99999999999999999999999", "\u0663"]
ODD_EVENT_IDS = ["\u00b2", "9223372036854775808", "99999999999999999999", "-1", "0", "1.0"]


def test_ids_out_of_range_are_404_for_every_method(client, users) -> None:  # type: ignore[no-untyped-def]
    # werkzeug answered 405 (naming another rule's methods) when the converter refused a value late.
    for path in ("/api/events/{id}/selfie", "/api/events/{id}", "/api/photos/{id}/thumbnail"):
        for method in ("get", "delete", "put"):
            served = getattr(client, method)(path.format(id="1"), headers=users[1]).status_code != 405
            for value in OUT_OF_RANGE_IDS:
                resp = getattr(client, method)(path.format(id=value), headers=users[1])
                if served:
                    assert_error(resp, 404, "not_found")
                else:
                    assert resp.status_code in (404, 405), (method, path, value)


def test_query_event_ids_are_parsed_and_bounded(client, users, event) -> None:  # type: ignore[no-untyped-def]
    for route in ("/api/my-photos", "/api/all-photos"):
        for value in ODD_EVENT_IDS:
            resp = client.get(route, query_string={"event_id": value}, headers=users[1])
            assert_error(resp, 400, "invalid_parameter")


def test_a_page_past_the_database_integers_is_400(client, users, event) -> None:  # type: ignore[no-untyped-def]
    query = {"event_id": event["id"], "page": "99999999999999999999"}
    assert_error(client.get("/api/all-photos", query_string=query, headers=users[1]), 400, "invalid_parameter")
    query["page"] = "100000"
    assert client.get("/api/all-photos", query_string=query, headers=users[1]).status_code == 200


def test_a_batch_id_that_cannot_exist_is_404(client, users) -> None:  # type: ignore[no-untyped-def]
    for batch_id in ("%00", "x%00y", "a" * 65, "a%0A"):
        for path in (f"/api/batches/{batch_id}", f"/api/batches/{batch_id}/events"):
            assert_error(client.get(path, headers=users[0]), 404, "batch_not_found")


def test_json_text_a_database_cannot_store_is_400(client, users, event) -> None:  # type: ignore[no-untyped-def]
    # NUL, a lone surrogate, one deep inside: JSON escapes can spell what PostgreSQL refuses to store.
    for raw in (b'{"name": "a\\u0000b"}', b'{"name": "\\ud800"}', b'{"name": "x", "other": [{"y": "\\udfff"}]}'):
        headers = {**users[0], "Content-Type": "application/json"}
        assert_error(client.post("/api/events", data=raw, headers=headers), 400, "invalid_json")
        join = raw.replace(b'"name"', b'"access_code"')
        headers = {**users[1], "Content-Type": "application/json"}
        assert_error(client.post(f"/api/events/{event['id']}/join", data=join, headers=headers), 400, "invalid_json")


def test_deeply_nested_json_is_400(client, users) -> None:  # type: ignore[no-untyped-def]
    headers = {**users[0], "Content-Type": "application/json"}
    for raw in (b"[" * 50000, b'{"a":' * 12000):
        assert_error(client.post("/api/events", data=raw, headers=headers), 400, "invalid_json")


def test_event_name_must_be_a_string(client, users) -> None:  # type: ignore[no-untyped-def]
    for name in (["x"], {"a": 1}, 7, None):
        assert_error(client.post("/api/events", json={"name": name}, headers=users[0]), 400, "invalid_name")


def test_photo_check_takes_only_hex_digests(client, users, event) -> None:  # type: ignore[no-untyped-def]
    path = f"/api/events/{event['id']}/photos/check"
    for digests in (["abc"], ["g" * 64], [1], ["a" * 64 + "\n"]):
        assert_error(client.post(path, json={"sha256": digests}, headers=users[0]), 400, "invalid_body")
    ok = client.post(path, json={"sha256": ["A" * 64]}, headers=users[0])
    assert ok.status_code == 200 and ok.json == {"present": [], "missing": ["a" * 64]}


def test_method_not_allowed_names_the_allowed_methods(client, users) -> None:  # type: ignore[no-untyped-def]
    # HTTP requires Allow on 405; the one error handler dropped the exception's headers.
    for path in ("/healthz", "/api/events"):
        resp = client.open(path, method="TRACE", headers=users[0])
        assert_error(resp, 405, "method_not_allowed")
        assert resp.headers["Allow"]
    assert set(client.patch("/api/events", headers=users[0]).headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_photo_check_takes_as_many_digests_as_it_says(client, users, event) -> None:  # type: ignore[no-untyped-def]
    # The route's own body limit fits its 10000 digests (the 64 KiB JSON default fits ~900).
    from webapp.photographer import MAX_CHECK_DIGESTS

    path = f"/api/events/{event['id']}/photos/check"
    digests = [f"{n:064x}" for n in range(MAX_CHECK_DIGESTS)]
    resp = client.post(path, json={"sha256": digests}, headers=users[0])
    assert resp.status_code == 200 and len(resp.json["missing"]) == MAX_CHECK_DIGESTS
    assert_error(client.post(path, json={"sha256": [*digests, "0" * 64]}, headers=users[0]), 400, "invalid_body")


def test_a_session_cookie_that_signs_nobody_in_is_401_not_csrf_failed(client, app) -> None:  # type: ignore[no-untyped-def]
    # schemathesis' ignored_auth check: a forged cookie on an unsafe API request was answered
    # 400 csrf_failed, as if it could have authenticated someone.
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "forged.value.here")
    for resp in (client.post("/api/events", json={"name": "x"}), client.delete("/api/events/1/selfie")):
        assert_error(resp, 401, "unauthorized")
