"""Uploads that must not be refused or lost (issue 13): JPEGs whose metadata passes 64 KiB (item 8),
one file's storage or database error in a multi-file upload (item 15)."""

# ruff: noqa: F811 - the fixtures imported below are used as parameters by name, as pytest does

from __future__ import annotations

import io

import pytest

from tests.images import compose, head_crop, jpeg, with_metadata_segments
from tests.integration.test_api import auth, event_id, photographer, upload  # noqa: F401 - fixtures and helpers


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


def _originals(env, event_id: int) -> set[str]:  # type: ignore[no-untyped-def]
    from pathlib import Path

    root = Path(env["SNAPMATCH_VAR_DIR"]) / "media" / "events" / str(event_id) / "originals"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_one_files_storage_error_rejects_that_file_only(client, photographer, event_id, env) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    from pathlib import Path

    good, bad = jpeg(seed=1), jpeg(seed=2)
    sha = hashlib.sha256(bad).hexdigest()
    # A real OS error: where the bad file's folder should be, there is a file.
    blocker = Path(env["SNAPMATCH_VAR_DIR"]) / "media" / "events" / str(event_id) / "originals" / sha[:2]
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    resp = upload(client, photographer, event_id, [("good.jpg", good), ("bad.jpg", bad), ("good2.jpg", jpeg(seed=3))])
    assert resp.status_code == 202
    by_name = {p["filename"]: p for p in resp.json["photos"]}
    assert by_name["good.jpg"]["status"] == by_name["good2.jpg"]["status"] == "queued"
    assert by_name["bad.jpg"]["status"] == "rejected"
    assert by_name["bad.jpg"]["error"]["code"] == "storage_error"
    assert str(blocker) not in by_name["bad.jpg"]["error"]["message"]
    assert client.get(f"/api/events/{event_id}", headers=auth(photographer)).json["photo_counts"] == {"queued": 2}


def test_one_files_database_error_rejects_that_file_and_removes_its_original(  # type: ignore[no-untyped-def]
    client, photographer, event_id, env
) -> None:
    from sqlalchemy import text

    from snapmatch import db

    with db.transaction() as conn:  # a real database error for one row, raised by the database itself
        if db.is_sqlite(conn):
            conn.execute(
                text(
                    "CREATE TRIGGER fail_one BEFORE INSERT ON photos WHEN NEW.filename = 'bad.jpg' "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error on /srv/db/snapmatch.db'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION fail_one() RETURNS trigger AS $$ BEGIN IF NEW.filename = 'bad.jpg' THEN "
                    "RAISE EXCEPTION 'could not write to db-primary.internal:5432'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text("CREATE TRIGGER fail_one BEFORE INSERT ON photos FOR EACH ROW EXECUTE FUNCTION fail_one()")
            )
    resp = upload(client, photographer, event_id, [("good.jpg", jpeg(seed=1)), ("bad.jpg", jpeg(seed=2))])
    assert resp.status_code == 202
    by_name = {p["filename"]: p for p in resp.json["photos"]}
    assert by_name["good.jpg"]["status"] == "queued"
    assert by_name["bad.jpg"]["status"] == "rejected"
    assert by_name["bad.jpg"]["error"]["code"] == "database_error"
    assert (
        "srv" not in by_name["bad.jpg"]["error"]["message"] and "internal" not in by_name["bad.jpg"]["error"]["message"]
    )
    assert len(_originals(env, event_id)) == 1  # the good file's; the bad one's was removed
