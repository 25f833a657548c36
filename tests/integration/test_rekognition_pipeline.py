"""Issue 4 acceptance: 4 worker processes on FACE_ENGINE=rekognition against the loopback
Rekognition server throttling 30 % of calls. Every photo ends done with the right matches, the
server never sees more than AWS_CONCURRENT_REQUESTS at once nor more than rate + burst in any
second, and no photo fails for running out of retries."""

from __future__ import annotations

import io
import os
import sys
import uuid

import pytest
from sqlalchemy import select

from tests.fakes.rekognition_server import RekognitionFake
from tests.images import variant
from tests.realphotos import offline_aws_environment
from tests.workload import counts, ingest_all, make_event, one_face_photos, scratch_dir, wait_until

pytestmark = pytest.mark.slow
PHOTOS = 100
RATE, CONCURRENCY = 5, 2


@pytest.fixture
def database_url(postgres_url):  # type: ignore[no-untyped-def]
    """PostgreSQL only (the production path): this minute-long run is not repeated on SQLite."""
    from tests.conftest import _reset_postgres

    _reset_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with RekognitionFake(throttle_rate=0.3, throttle_code="mixed", latency=0.02, seed=7) as server:
        yield server


@pytest.fixture
def aws_env(env, fake, moto_url, monkeypatch):  # type: ignore[no-untyped-def]
    from snapmatch import settings, storage

    values = {
        "FACE_ENGINE": "rekognition",
        "AWS_REQUESTS_PER_SECOND": str(RATE),
        "AWS_CONCURRENT_REQUESTS": str(CONCURRENCY),
        "SWEEP_GRACE_SECONDS": "30",
        # Media on S3 too, as on several machines: nothing of a photo lives on one host's disk.
        "STORAGE_URL": f"s3://snapmatch-e2e-{uuid.uuid4().hex[:8]}/media",
        "S3_ENDPOINT_URL": moto_url,
    }
    offline_aws_environment(monkeypatch, AWS_ENDPOINT_URL_REKOGNITION=fake.endpoint_url, **values)
    env.clear()
    env.update(os.environ)  # the worker processes get exactly this environment
    settings.get_settings.cache_clear()
    storage._cache.clear()
    return env


def _selfie(user_email: str, event, data: bytes) -> int:  # type: ignore[no-untyped-def]
    from jobs.queues import enqueue_selfie
    from snapmatch import accounts, events, selfies
    from snapmatch.redis_client import get_redis
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    user = accounts.create_user(user_email, "attendee", "long enough password")
    events.join_event(user, event.id, event.access_code)
    upload = selfies.put_selfie(
        user,
        event.id,
        io.BytesIO(data),
        storage=open_storage(settings.STORAGE_URL),
        settings=settings,
        tmp_dir=scratch_dir(),
    )
    enqueue_selfie(get_redis(), upload.selfie_id, upload.image_key, upload.generation)
    return user.id


def test_throttled_rekognition_under_a_shared_limit(aws_env, processes, fake, face_images) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import matches, photos, selfies

    event = make_event("Rekognition run")
    # Selfies first (both directions are exercised: they are indexed before any photo, and
    # photos uploaded afterwards search for them).
    obama_user = _selfie("o@example.com", event, (face_images / "obama_partial_face.jpg").read_bytes())
    biden_user = _selfie("b@example.com", event, variant(face_images / "biden.jpg", flip=True, crop=0.8, seed=9))
    for i in range(4):
        processes.worker(f"rek-worker-{i}")
    processes.start(sys.executable, "-m", "jobs.scheduler", name="scheduler")

    def selfies_ready() -> bool:
        with db.connection() as conn:
            return set(conn.execute(select(selfies.c.status)).scalars()) == {"ready"}

    wait_until(selfies_ready, 120, "both selfies ready")
    ids = ingest_all(one_face_photos(face_images, PHOTOS), event)
    wait_until(lambda: counts().get("done", 0) == PHOTOS, 400, "every photo done")

    assert counts() == {"done": PHOTOS}, "no photo failed or waits on quota"
    with db.connection() as conn:
        matched = conn.execute(
            select(selfies.c.user_id, matches.c.photo_id).join(selfies, selfies.c.id == matches.c.selfie_id)
        ).all()
        face_counts = dict(conn.execute(select(photos.c.id, photos.c.face_count)).all())
    by_user: dict[int, set[int]] = {obama_user: set(), biden_user: set()}
    for user_id, photo_id in matched:
        by_user[user_id].add(photo_id)
    # one_face_photos alternates Obama (even index) and Biden (odd index)
    assert by_user[obama_user] == {pid for i, pid in enumerate(ids) if i % 2 == 0}
    assert by_user[biden_user] == {pid for i, pid in enumerate(ids) if i % 2 == 1}
    assert set(face_counts.values()) == {1}
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    with db.connection() as conn:
        thumbnail_key = conn.execute(select(photos.c.thumbnail_key).where(photos.c.id == ids[0])).scalar()
    assert open_storage(get_settings().STORAGE_URL).get(thumbnail_key)[:2] == b"\xff\xd8"  # written to S3

    stats = fake.stats()
    print(f"\nrekognition fake saw: {stats}")
    assert stats["max_concurrent"] <= CONCURRENCY, stats
    assert stats["max_per_second"] <= RATE + RATE, stats  # rate + burst (burst defaults to one second's worth)
    assert stats["throttled"] > 0, "the fault injection really throttled calls"
