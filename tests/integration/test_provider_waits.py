"""Provider waits seen from the job: a long Retry-After reschedules the photo job as a new
generation (no worker held, no retry used); an exhausted time budget ends as quota_exceeded.

Real boto3 against the loopback Rekognition server, real Redis, the job run by RQ's SimpleWorker."""

from __future__ import annotations

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from tests.fakes.rekognition_server import RekognitionFake
from tests.images import compose, head_crop
from tests.realphotos import offline_aws_environment
from tests.workload import ingest_all


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/snapmatch.db"  # job behaviour, not SQL: one backend is enough


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with RekognitionFake(seed=3) as server:
        yield server


@pytest.fixture
def rekognition_env(env, fake, monkeypatch):  # type: ignore[no-untyped-def]
    from jobs import runtime
    from snapmatch import settings

    offline_aws_environment(monkeypatch, FACE_ENGINE="rekognition", AWS_ENDPOINT_URL_REKOGNITION=fake.endpoint_url)
    settings.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    yield
    runtime.get_runtime.cache_clear()


def _photo_row(photo_id: int):  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import photos

    with db.connection() as conn:
        return conn.execute(select(photos).where(photos.c.id == photo_id)).first()


def _one_photo(face_images) -> int:  # type: ignore[no-untyped-def]
    return ingest_all([compose([head_crop(face_images / "obama.jpg")], size=(900, 700), seed=1)])[0]


def test_a_long_retry_after_reschedules_without_using_a_retry(rekognition_env, fake, redis_url, face_images) -> None:  # type: ignore[no-untyped-def]
    fake.configure(throttle_rate=1.0, retry_after=30)
    photo_id = _one_photo(face_images)
    connection = redis_lib.Redis.from_url(redis_url)
    queue = Queue("photos", connection=connection)
    SimpleWorker([queue], connection=connection).work(burst=True)

    first = Job.fetch(f"photo-{photo_id}-0", connection=connection)
    assert first.get_status() == "finished" and first.return_value() == "rescheduled"
    assert first.retries_left == 2, "the wait did not consume a retry"
    scheduled = ScheduledJobRegistry(queue=queue)
    assert scheduled.get_job_ids() == [f"photo-{photo_id}-1"]
    delay = scheduled.get_scheduled_time(f"photo-{photo_id}-1").timestamp() - first.ended_at.timestamp()
    assert 25 <= delay <= 35
    row = _photo_row(photo_id)
    assert (row.status, row.enqueue_count) == ("queued", 1)
    assert fake.stats()["total"] <= 3, "one throttled attempt, then no worker kept trying"


def test_an_exhausted_time_budget_ends_as_quota_exceeded(
    rekognition_env, fake, redis_url, face_images, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from jobs import runtime
    from snapmatch import settings

    monkeypatch.setenv("AWS_TIMEOUT_SECONDS_TOTAL", "1")
    monkeypatch.setenv("AWS_MAX_INLINE_WAIT_SECONDS", "10")
    settings.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    fake.configure(throttle_rate=1.0, retry_after=2)
    photo_id = _one_photo(face_images)
    connection = redis_lib.Redis.from_url(redis_url)
    SimpleWorker([Queue("photos", connection=connection)], connection=connection).work(burst=True)

    row = _photo_row(photo_id)
    assert (row.status, row.error_code) == ("quota_exceeded", "quota_exceeded")
    assert "budget" in row.error_message


def test_orphan_provider_faces_are_purged_but_in_flight_ones_kept(rekognition_env, fake, face_images) -> None:  # type: ignore[no-untyped-def]
    """A worker died between IndexFaces and its commit: the face is in the collection, not in the DB."""
    from jobs.maintenance import purge_orphan_provider_faces
    from jobs.runtime import get_runtime
    from snapmatch import db
    from snapmatch.schema import photos

    crashed, in_flight = ingest_all(
        [
            compose([head_crop(face_images / name)], size=(900, 700), seed=i)
            for i, name in enumerate(["obama.jpg", "biden.jpg"])
        ]
    )
    engine = get_runtime().engine
    for photo_id in (crashed, in_flight):
        image = compose([head_crop(face_images / "obama.jpg")], size=(900, 700), seed=photo_id)
        assert len(engine.index_photo(_photo_row(photo_id).event_id, photo_id, image)) == 1
    with db.transaction() as conn:  # the crashed photo ended (e.g. failed later); the other is still queued
        conn.execute(photos.update().where(photos.c.id == crashed).values(status="failed"))
    event_id = _photo_row(crashed).event_id

    assert purge_orphan_provider_faces(event_id) == 1
    remaining = set(engine.list_faces(event_id).values())
    assert remaining == {str(in_flight)}


def test_a_selfie_after_the_photos_finds_them_through_the_collection(rekognition_env, redis_url, face_images) -> None:  # type: ignore[no-untyped-def]
    import io

    from jobs.queues import enqueue_selfie
    from snapmatch import accounts, db, events, selfies
    from snapmatch.schema import matches
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage
    from tests.images import variant
    from tests.workload import scratch_dir

    obama, biden = (
        compose([head_crop(face_images / name)], size=(900, 700), seed=i)
        for i, name in enumerate(["obama.jpg", "biden.jpg"])
    )
    obama_id, biden_id = ingest_all([obama, biden])
    connection = redis_lib.Redis.from_url(redis_url)
    worker = SimpleWorker(
        [Queue("selfies", connection=connection), Queue("photos", connection=connection)], connection=connection
    )
    worker.work(burst=True)
    event = events.get_event(_photo_row(obama_id).event_id)
    user = accounts.create_user("late@example.com", "attendee", "long enough password")
    events.join_event(user, event.id, event.access_code)
    settings = get_settings()
    upload = selfies.put_selfie(
        user,
        event.id,
        io.BytesIO(variant(face_images / "biden.jpg", flip=True, crop=0.8, seed=9)),
        storage=open_storage(settings.STORAGE_URL),
        settings=settings,
        tmp_dir=scratch_dir(),
    )
    enqueue_selfie(connection, upload.selfie_id, upload.image_key, upload.generation)
    worker.work(burst=True)
    with db.connection() as conn:
        matched = set(conn.execute(select(matches.c.photo_id).where(matches.c.selfie_id == upload.selfie_id)).scalars())
    assert matched == {biden_id}
