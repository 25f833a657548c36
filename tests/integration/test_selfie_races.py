"""Selfie writes racing each other and the photo pipeline (issue 13, items 10 and 11), on SQLite and
PostgreSQL: simultaneous first selfies, a stale job's failure, a photo committing during a replace."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker
from sqlalchemy import insert, select, update

from tests.images import jpeg, variant


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _joined_attendee(client, make_user) -> tuple[int, str, int]:  # type: ignore[no-untyped-def]
    """(event id, attendee token, attendee user id) for a fresh event the attendee joined."""
    from snapmatch import accounts

    _, photographer = make_user("photographer")
    event = client.post("/api/events", json={"name": "Gala"}, headers=auth(photographer)).json
    email, attendee = make_user("attendee")
    joined = client.post(
        f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth(attendee)
    )
    assert joined.status_code == 200
    return event["id"], attendee, accounts.find_user(email).id


def _selfie_rows(event_id: int):  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import selfies

    with db.connection() as conn:
        return conn.execute(select(selfies).where(selfies.c.event_id == event_id)).all()


def _stored_selfie_keys(var: Path, event_id: int, user_id: int) -> set[str]:
    folder = var / "media" / "selfies" / str(event_id) / str(user_id)
    return {f"selfies/{event_id}/{user_id}/{p.name}" for p in folder.iterdir()} if folder.exists() else set()


def test_six_simultaneous_first_selfies_leave_one_selfie_and_no_orphans(  # type: ignore[no-untyped-def]
    app, client, make_user, env, redis_url, face_images
) -> None:
    event_id, attendee, user_id = _joined_attendee(client, make_user)
    me = face_images / "obama.jpg"
    # Three identical files (one content-addressed key shared) and three different ones.
    bodies = [variant(me, seed=1)] * 3 + [variant(me, seed=s, crop=0.9) for s in (2, 3, 4)]
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def put(body: bytes) -> None:
        own = app.test_client()
        barrier.wait()
        resp = own.put(
            f"/api/events/{event_id}/selfie",
            data={"file": (io.BytesIO(body), "me.jpg")},
            headers=auth(attendee),
            content_type="multipart/form-data",
        )
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202] * 6
    rows = _selfie_rows(event_id)
    assert len(rows) == 1
    var = Path(env["SNAPMATCH_VAR_DIR"])
    assert _stored_selfie_keys(var, event_id, user_id) == {rows[0].image_key}

    connection = redis_lib.Redis.from_url(redis_url)
    SimpleWorker([Queue("selfies", connection=connection)], connection=connection).work(burst=True)
    rows = _selfie_rows(event_id)
    assert [r.status for r in rows] == ["ready"]
    assert _stored_selfie_keys(var, event_id, user_id) == {rows[0].image_key}


def test_a_stale_selfie_job_failing_leaves_the_newer_selfie_alone(client, make_user, app) -> None:  # type: ignore[no-untyped-def]
    from jobs.selfie import on_selfie_job_failure
    from snapmatch.schema import SelfieStatus

    event_id, attendee, _ = _joined_attendee(client, make_user)

    def put(body: bytes) -> None:
        resp = client.put(
            f"/api/events/{event_id}/selfie",
            data={"file": (io.BytesIO(body), "me.jpg")},
            headers=auth(attendee),
            content_type="multipart/form-data",
        )
        assert resp.status_code == 202

    put(jpeg(seed=1))
    (old,) = _selfie_rows(event_id)
    put(jpeg(seed=1))  # the same file again is a new upload too
    (new,) = _selfie_rows(event_id)

    class FailedJob:  # what RQ hands the failure callback: the old upload's job, out of retries
        args = (old.id, old.image_key)
        retries_left = 0
        id = f"selfie-{old.id}-0"

    on_selfie_job_failure(FailedJob(), None, RuntimeError, RuntimeError("boom"), None)
    (row,) = _selfie_rows(event_id)
    assert row.image_key == new.image_key
    assert row.status == SelfieStatus.PROCESSING.value and row.error_code is None

    FailedJob.args = (new.id, new.image_key)
    on_selfie_job_failure(FailedJob(), None, RuntimeError, RuntimeError("boom"), None)
    (row,) = _selfie_rows(event_id)
    assert row.status == SelfieStatus.FAILED.value


def test_a_photo_committing_during_a_selfie_replace_gives_the_new_selfie_none_of_the_old_matches(  # type: ignore[no-untyped-def]
    client, make_user, app
) -> None:
    """A photo's write transaction (event lock first, as in matching.write_photo_faces) read the old
    selfie as ready and is about to insert its matches; a new selfie arrives meanwhile. The replace
    must wait for that transaction, then drop what it wrote: the new selfie starts with no matches."""
    from snapmatch import db
    from snapmatch.schema import SelfieStatus, events, faces, matches, photos, selfies

    event_id, attendee, _ = _joined_attendee(client, make_user)
    _, photographer = make_user("photographer")
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=1)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202
    (old,) = _selfie_rows(event_id)
    now = db.utcnow()
    with db.transaction() as conn:
        conn.execute(update(selfies).where(selfies.c.id == old.id).values(status=SelfieStatus.READY.value))
        photo_id = conn.execute(
            insert(photos).values(
                event_id=event_id,
                sha256="0" * 64,
                filename="p.jpg",
                content_type="image/jpeg",
                size_bytes=1,
                width=10,
                height=10,
                original_key="k",
                status="processing",
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        face_id = conn.execute(
            insert(faces).values(
                photo_id=photo_id,
                event_id=event_id,
                face_index=0,
                left=0,
                top=0,
                width=5,
                height=5,
                score=1.0,
                embedding=b"",
            )
        ).inserted_primary_key[0]

    replaced = threading.Event()
    outcome: list[object] = []

    def replace() -> None:
        resp = app.test_client().put(
            f"/api/events/{event_id}/selfie",
            data={"file": (io.BytesIO(jpeg(seed=2)), "me.jpg")},
            headers=auth(attendee),
            content_type="multipart/form-data",
        )
        outcome.append(resp.status_code)
        replaced.set()

    with db.transaction() as conn:
        conn.execute(update(events).where(events.c.id == event_id).values(match_version=events.c.match_version + 1))
        ready = (
            conn.execute(
                select(selfies.c.id).where(selfies.c.event_id == event_id, selfies.c.status == SelfieStatus.READY.value)
            )
            .scalars()
            .all()
        )
        assert ready == [old.id]
        thread = threading.Thread(target=replace)
        thread.start()
        assert not replaced.wait(1.5), "the selfie replace did not wait for the event lock"
        conn.execute(
            insert(matches).values(
                selfie_id=old.id, face_id=face_id, photo_id=photo_id, event_id=event_id, distance=0.1
            )
        )
    thread.join(30)
    assert outcome == [202]
    (row,) = _selfie_rows(event_id)
    assert row.status == SelfieStatus.PROCESSING.value
    with db.connection() as conn:
        assert conn.execute(select(matches.c.id).where(matches.c.selfie_id == row.id)).all() == []


@pytest.mark.slow
def test_six_simultaneous_first_selfies_over_http(env, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    """The acceptance check on a running stack: gunicorn (2 processes x 4 threads) and a worker."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.test_end_to_end import new_account, wait_for

    url = processes.web()
    processes.worker("selfie-race-worker")
    photographer = new_account(env, "pho@example.com", "photographer")
    event = photographer.post(f"{url}/api/events", json={"name": "Gala"}).json()
    attendee = new_account(env, "att@example.com", "attendee")
    assert attendee.post(f"{url}/api/events/{event['id']}/join", json=event).status_code == 200
    me = face_images / "obama.jpg"
    bodies = [variant(me, seed=1)] * 3 + [variant(me, seed=s, crop=0.9) for s in (2, 3, 4)]
    barrier = threading.Barrier(len(bodies))

    def put(body: bytes) -> int:
        barrier.wait()
        return attendee.put(f"{url}/api/events/{event['id']}/selfie", files={"file": ("me.jpg", body)}).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(put, bodies))
    assert statuses == [202] * 6
    selfie = wait_for(
        lambda: (s := attendee.get(f"{url}/api/events/{event['id']}/selfie").json())["status"] != "processing" and s,
        60,
        "the selfie",
    )
    assert selfie["status"] == "ready"
    (row,) = _selfie_rows(event["id"])
    user_id = row.user_id
    assert _stored_selfie_keys(Path(env["SNAPMATCH_VAR_DIR"]), event["id"], user_id) == {row.image_key}


def test_delete_my_face_data_survives_a_storage_error(client, make_user, env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The row goes, DELETE answers 204, and the image the storage could not delete now is owed in the
    database and deleted by the sweeper: nothing of the face is kept because one call failed."""
    from datetime import timedelta

    from jobs.maintenance import sweep
    from snapmatch import db
    from snapmatch.schema import pending_deletions
    from snapmatch.storage import LocalStorage

    event_id, attendee, user_id = _joined_attendee(client, make_user)
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=1)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202
    (row,) = _selfie_rows(event_id)
    var = Path(env["SNAPMATCH_VAR_DIR"])

    def failing_delete(self, key: str) -> None:  # type: ignore[no-untyped-def]
        raise OSError(f"cannot reach /mnt/media/{key}")

    with monkeypatch.context() as m:
        m.setattr(LocalStorage, "delete", failing_delete)
        assert client.delete(f"/api/events/{event_id}/selfie", headers=auth(attendee)).status_code == 204
    assert _selfie_rows(event_id) == []
    assert _stored_selfie_keys(var, event_id, user_id) == {row.image_key}
    with db.transaction() as conn:
        assert conn.execute(select(pending_deletions.c.storage_key)).scalars().all() == [row.image_key]
        conn.execute(update(pending_deletions).values(created_at=db.utcnow() - timedelta(minutes=5)))
    sweep()
    assert _stored_selfie_keys(var, event_id, user_id) == set()
    with db.connection() as conn:
        assert conn.execute(select(pending_deletions.c.id)).all() == []


def test_a_selfie_the_storage_cannot_take_gets_503_with_a_code(client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from snapmatch.storage import LocalStorage

    event_id, attendee, _ = _joined_attendee(client, make_user)

    def failing_put(self, key: str, path: str, content_type: str = "") -> None:  # type: ignore[no-untyped-def]
        raise OSError("No space left on device: '/mnt/media/selfies'")

    monkeypatch.setattr(LocalStorage, "put_file", failing_put)
    resp = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=1)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    assert resp.status_code == 503 and resp.json["error"]["code"] == "storage_error"
    assert "/mnt" not in resp.json["error"]["message"]
    assert _selfie_rows(event_id) == []


def test_simultaneous_reference_photos_never_pass_the_limit(app, client, make_user, env, face_images) -> None:  # type: ignore[no-untyped-def]
    """Six reference photos at once, limit 3 (the selfie and two more): two are taken, four refused
    with too_many_reference_photos, and the refused ones leave no image behind."""
    from snapmatch import db
    from snapmatch.schema import selfie_references

    event_id, attendee, user_id = _joined_attendee(client, make_user)
    me = face_images / "obama.jpg"
    put = client.put(
        f"/api/events/{event_id}/selfie",
        data={"file": (io.BytesIO(variant(me, seed=1)), "me.jpg")},
        headers=auth(attendee),
    )
    assert put.status_code == 202
    bodies = [variant(me, seed=s, crop=0.9) for s in range(2, 8)]
    barrier = threading.Barrier(len(bodies))
    answers: list[tuple[int, str | None]] = []

    def post(body: bytes) -> None:
        own = app.test_client()
        barrier.wait()
        resp = own.post(
            f"/api/events/{event_id}/selfies", data={"file": (io.BytesIO(body), "ref.jpg")}, headers=auth(attendee)
        )
        answers.append((resp.status_code, (resp.json or {}).get("error", {}).get("code")))

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [(202, None)] * 2 + [(409, "too_many_reference_photos")] * 4, answers
    with db.connection() as conn:
        keys = set(conn.execute(select(selfie_references.c.image_key)).scalars())
    stored = {k for k in _stored_selfie_keys(Path(env["SNAPMATCH_VAR_DIR"]), event_id, user_id) if "/ref-" in k}
    assert len(keys) == 2 and stored == keys
