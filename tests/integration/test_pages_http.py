"""The pages' server side through the Flask app (SQLite and PostgreSQL, real Redis): the page
contract's hooks, the join form's sign-up, who may open which page, the QR code, and the streamed
zip of originals (each person gets exactly the photos they may see)."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from sqlalchemy import insert, update

from snapmatch import accounts, db, events
from snapmatch.schema import PhotoStatus, faces, matches, photos, selfies
from tests.images import jpeg

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


def csrf_of(client, path: str) -> str:  # type: ignore[no-untyped-def]
    page = client.get(path, headers=HTML).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)


def sign_in(client, email: str) -> None:  # type: ignore[no-untyped-def]
    token = csrf_of(client, "/login")
    resp = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}, headers=HTML)
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]


@pytest.fixture
def owner(env):  # type: ignore[no-untyped-def]
    return accounts.create_user("owner@example.com", "photographer", PASSWORD)


def test_photographer_creates_an_event_and_its_page_has_the_hooks(app, owner) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    assert client.get("/events", headers=HTML).status_code == 302  # to the sign-in page
    sign_in(client, "owner@example.com")
    token = csrf_of(client, "/events")
    resp = client.post("/events", data={"name": "Harbour run", "csrf_token": token}, headers=HTML)
    assert resp.status_code == 303
    event_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    listing = client.get("/events", headers=HTML).get_data(as_text=True)
    assert "Harbour run" in listing and f'href="/events/{event_id}"' in listing
    page = client.get(f"/events/{event_id}", headers=HTML).get_data(as_text=True)
    code = events.get_event(event_id).access_code
    assert re.search(r'<input[^>]*type="file"[^>]*multiple', page)
    assert f'id="access-code">{code}<' in page and f"/join/{event_id}" in page
    qr = client.get(f"/events/{event_id}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml" and b"<svg" in qr.data
    empty = client.post("/events", data={"name": "  ", "csrf_token": token}, headers=HTML)
    assert empty.status_code == 400 and "Give the event a name" in empty.get_data(as_text=True)

    other = app.test_client()
    accounts.create_user("other@example.com", "photographer", PASSWORD)
    sign_in(other, "other@example.com")
    assert other.get(f"/events/{event_id}", headers=HTML).status_code == 404
    assert other.get(f"/events/{event_id}/qr.svg").status_code == 404


def test_join_form_signs_up_an_attendee_and_lands_on_the_gallery(app, owner) -> None:  # type: ignore[no-untyped-def]
    event = events.create_event(owner, "Gala")
    client = app.test_client()
    page = client.get(f"/join/{event.id}", headers=HTML).get_data(as_text=True)
    for hook in ('name="access_code"', 'name="email"', 'name="password"'):
        assert hook in page
    token = csrf_of(client, f"/join/{event.id}")
    form = {"access_code": "WRONG123", "email": "ann@example.com", "password": PASSWORD, "csrf_token": token}
    wrong = client.post(f"/join/{event.id}", data=form, headers=HTML)
    assert wrong.status_code == 403 and "not this event" in wrong.get_data(as_text=True)
    with pytest.raises(Exception, match="No user"):
        accounts.find_user("ann@example.com")  # a wrong code leaves no account behind

    joined = client.post(f"/join/{event.id}", data={**form, "access_code": event.access_code.lower()}, headers=HTML)
    assert joined.status_code == 303 and joined.headers["Location"].endswith(f"/e/{event.id}")
    ann = accounts.find_user("ann@example.com")
    assert ann.role.value == "attendee" and events.is_member(ann, event.id)
    gallery = client.get(f"/e/{event.id}", headers=HTML).get_data(as_text=True)
    assert 'name="selfie"' in gallery and 'capture="user"' in gallery and 'data-action="delete-selfie"' in gallery
    assert "0 of 0 photos checked" in gallery

    again = app.test_client()
    token = csrf_of(again, f"/join/{event.id}")
    form = {**form, "access_code": event.access_code, "csrf_token": token}
    taken = again.post(f"/join/{event.id}", data=form, headers=HTML)
    assert taken.status_code == 409 and "sign in first" in taken.get_data(as_text=True)

    other_event = events.create_event(owner, "Other")
    assert client.get(f"/e/{other_event.id}", headers=HTML).status_code == 302  # not joined: to its join form


def _done_photo(event_id: int, owner_id: int, name: str, seed: int, app, token: str) -> int:  # type: ignore[no-untyped-def]
    client = app.test_client()
    resp = client.post(
        f"/api/events/{event_id}/photos",
        data={"files": [(io.BytesIO(jpeg(seed=seed)), name)]},
        headers={"Authorization": f"Bearer {token}"},
        content_type="multipart/form-data",
    )
    photo_id = resp.json["photos"][0]["photo_id"]
    with db.transaction() as conn:
        conn.execute(update(photos).where(photos.c.id == photo_id).values(status=PhotoStatus.DONE.value))
    return photo_id


def _match(selfie_id: int, photo_id: int, event_id: int) -> None:
    with db.transaction() as conn:
        face_id = conn.execute(
            insert(faces).values(
                photo_id=photo_id,
                event_id=event_id,
                face_index=0,
                left=0,
                top=0,
                width=10,
                height=10,
                score=1.0,
                embedding=b"",
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(matches).values(
                selfie_id=selfie_id, face_id=face_id, photo_id=photo_id, event_id=event_id, distance=0.3
            )
        )


def test_download_zip_streams_my_photos_to_an_attendee_and_all_to_the_owner(app, owner) -> None:  # type: ignore[no-untyped-def]
    token = accounts.create_token("owner@example.com")
    event = events.create_event(owner, "Zip party")
    ids = [_done_photo(event.id, owner.id, name, n, app, token) for n, name in enumerate(["a.jpg", "b.jpg", "a.jpg"])]
    ann = accounts.create_user("ann@example.com", "attendee", PASSWORD)
    events.join_event(ann, event.id, event.access_code)
    with db.transaction() as conn:
        selfie_id = conn.execute(
            insert(selfies).values(
                event_id=event.id,
                user_id=ann.id,
                image_key="selfies/x.jpg",
                status="ready",
                created_at=db.utcnow(),
                updated_at=db.utcnow(),
            )
        ).inserted_primary_key[0]
    _match(selfie_id, ids[1], event.id)

    def archive(bearer: str):  # type: ignore[no-untyped-def]
        url = f"/api/events/{event.id}/download.zip"
        return app.test_client().get(url, headers={"Authorization": f"Bearer {bearer}"})

    resp = archive(token)
    assert resp.status_code == 200 and resp.mimetype == "application/zip" and resp.is_streamed
    with zipfile.ZipFile(io.BytesIO(resp.data)) as z:
        assert z.testzip() is None
        assert sorted(z.namelist()) == sorted(["a.jpg", "b.jpg", f"a-{ids[2]}.jpg"])
        assert z.read("b.jpg") == jpeg(seed=1)

    mine = archive(accounts.create_token("ann@example.com"))
    with zipfile.ZipFile(io.BytesIO(mine.data)) as z:
        assert z.namelist() == ["b.jpg"]

    stranger = accounts.create_user("bob@example.com", "attendee", PASSWORD)
    assert stranger.id
    refused = archive(accounts.create_token("bob@example.com"))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "not_joined"


def test_the_gallery_has_a_search_box_only_when_photos_are_described(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import settings
    from webapp import create_app

    owner = accounts.create_user("owner@example.com", "photographer", PASSWORD)
    event = events.create_event(owner, "Marathon")
    accounts.create_user("runner@example.com", "attendee", PASSWORD)
    pages = {}
    for key in ("", "test-key"):
        monkeypatch.setenv("GEMINI_API_KEY", key)
        settings.get_settings.cache_clear()
        client = create_app({"TESTING": True}).test_client()
        sign_in(client, "runner@example.com")
        events.join_event(accounts.find_user("runner@example.com"), event.id, event.access_code)
        pages[key] = client.get(f"/e/{event.id}", headers=HTML).get_data(as_text=True)
    settings.get_settings.cache_clear()
    assert 'id="search-form"' not in pages[""]
    assert 'id="search-form"' in pages["test-key"] and 'name="q"' in pages["test-key"]
