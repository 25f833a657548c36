"""Permanent provider errors (issue 13, item 16): a Rekognition 4xx other than throttling fails the
photo or selfie at once with a code, instead of three attempts. Real boto3 against the loopback fake."""

# ruff: noqa: F811 - the fixtures imported below are used as parameters by name, as pytest does

from __future__ import annotations

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from tests.images import compose, head_crop, variant
from tests.integration.test_provider_waits import database_url, fake, rekognition_env  # noqa: F401 - fixtures
from tests.workload import ingest_all, joined_attendee, make_event, put_selfie


def _row(table, row_id: int):  # type: ignore[no-untyped-def]
    from snapmatch import db

    with db.connection() as conn:
        return conn.execute(select(table).where(table.c.id == row_id)).first()


@pytest.mark.parametrize(
    ("provider_code", "expected"),
    [
        ("InvalidParameterException", "provider_rejected"),
        ("InvalidImageFormatException", "provider_image"),
        ("ImageTooLargeException", "provider_image"),
        ("AccessDeniedException", "provider_rejected"),
    ],
)
def test_a_permanent_provider_error_fails_the_photo_at_once(  # type: ignore[no-untyped-def]
    rekognition_env, fake, redis_url, face_images, provider_code, expected
) -> None:
    from snapmatch.schema import photos

    fake.configure(error_code=provider_code, ops=("IndexFaces",))
    (photo_id,) = ingest_all([compose([head_crop(face_images / "obama.jpg")], size=(900, 700), seed=1)])
    connection = redis_lib.Redis.from_url(redis_url)
    queue = Queue("photos", connection=connection)
    SimpleWorker([queue], connection=connection).work(burst=True)

    row = _row(photos, photo_id)
    assert (row.status, row.error_code) == ("failed", expected)
    assert provider_code not in row.error_message and "injected" not in row.error_message
    assert fake.stats()["calls"]["IndexFaces"] == 1, "a permanent error was tried again"
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [], "an RQ retry was scheduled"
    assert Job.fetch(f"photo-{photo_id}-0", connection=connection).get_status() == "finished"


def test_a_permanent_provider_error_fails_the_selfie_at_once(rekognition_env, fake, redis_url, face_images) -> None:  # type: ignore[no-untyped-def]
    from jobs.queues import enqueue_selfie
    from snapmatch.schema import selfies as selfie_table

    event = make_event()
    upload = put_selfie(joined_attendee(event), event.id, variant(face_images / "obama.jpg", seed=2))
    fake.configure(error_code="InvalidParameterException", ops=("IndexFaces",))
    connection = redis_lib.Redis.from_url(redis_url)
    enqueue_selfie(connection, upload.selfie_id, upload.image_key, upload.generation)
    queue = Queue("selfies", connection=connection)
    SimpleWorker([queue], connection=connection).work(burst=True)

    row = _row(selfie_table, upload.selfie_id)
    assert (row.status, row.error_code) == ("failed", "provider_rejected")
    assert fake.stats()["calls"]["IndexFaces"] == 1
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == []


def test_a_provider_wait_is_a_planned_generation_not_a_crash(rekognition_env, fake, redis_url, face_images) -> None:  # type: ignore[no-untyped-def]
    """Issue 13, item 13: a reschedule for a provider wait is counted apart from crash re-enqueues."""
    from jobs.maintenance import crashes
    from snapmatch.schema import photos

    fake.configure(throttle_rate=1.0, retry_after=30)
    (photo_id,) = ingest_all([compose([head_crop(face_images / "obama.jpg")], size=(900, 700), seed=1)])
    connection = redis_lib.Redis.from_url(redis_url)
    SimpleWorker([Queue("photos", connection=connection)], connection=connection).work(burst=True)
    row = _row(photos, photo_id)
    assert (row.status, row.enqueue_count, row.planned_generations) == ("queued", 1, 1)
    assert crashes(row.enqueue_count, row.planned_generations) == 0


def test_delete_my_face_data_with_redis_down_answers_204_and_the_sweeper_deletes_the_face(  # type: ignore[no-untyped-def]
    rekognition_env, fake, redis_url, face_images, make_user, monkeypatch
) -> None:
    """Issue 13, item 14: the provider-side deletion is recorded in the database with the selfie's
    deletion, so a Redis outage cannot lose it; the sweeper has it done once Redis answers."""
    from jobs.maintenance import sweep
    from jobs.queues import enqueue_selfie
    from snapmatch import accounts, db, events, selfies
    from snapmatch.schema import pending_deletions
    from snapmatch.settings import get_settings
    from tests.conftest import free_port
    from webapp import attendee, create_app

    event = make_event()
    email, token = make_user("attendee")
    user = accounts.find_user(email)
    events.join_event(user, event.id, event.access_code)
    settings = get_settings()
    upload = put_selfie(user, event.id, variant(face_images / "obama.jpg", seed=2))
    connection = redis_lib.Redis.from_url(redis_url)
    enqueue_selfie(connection, upload.selfie_id, upload.image_key, upload.generation)
    SimpleWorker([Queue("selfies", connection=connection)], connection=connection).work(burst=True)
    face_id = selfies.get_selfie(user, event.id).provider_face_id
    collection = f"{settings.REKOGNITION_COLLECTION_PREFIX}-event-{event.id}"
    assert face_id in fake.faces(collection)

    dead = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    monkeypatch.setattr(attendee, "redis", lambda: dead)
    client = create_app({"TESTING": True}).test_client()
    resp = client.delete(f"/api/events/{event.id}/selfie", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 204
    assert selfies.get_selfie(user, event.id) is None
    with db.connection() as conn:
        owed = conn.execute(select(pending_deletions.c.provider_face_id)).scalars().all()
        assert owed == [face_id]  # the image itself was deleted by the request
    assert face_id in fake.faces(collection)

    sweep()  # Redis answers again
    SimpleWorker([Queue("maintenance", connection=connection)], connection=connection).work(burst=True)
    assert face_id not in fake.faces(collection)
    with db.connection() as conn:
        assert conn.execute(select(pending_deletions.c.id)).all() == []
    assert sweep() and Queue("maintenance", connection=connection).count == 0  # nothing left to enqueue
