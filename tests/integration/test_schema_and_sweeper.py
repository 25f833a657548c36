"""Migrations build exactly the declared schema; the sweeper re-enqueues what Redis lost."""

from __future__ import annotations

import io

import redis as redis_lib
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from rq import Queue
from sqlalchemy import select, update

from tests.images import jpeg


def test_migrations_match_the_schema(env) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import metadata

    with db.get_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    db.migrate()  # running again is a no-op


def _queued_photo(seed: int = 1) -> int:
    from snapmatch import accounts, events, ingest
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    user = accounts.create_user(f"p{seed}@example.com", "photographer", "long enough password")
    event = events.create_event(user, "E")
    batch = ingest.ensure_batch(event.id, user.id, None)
    result = ingest.ingest_file(
        event_id=event.id,
        batch_id=batch,
        stream=io.BytesIO(jpeg(seed=seed)),
        filename="a.jpg",
        storage=open_storage(settings.STORAGE_URL),
        settings=settings,
        tmp_dir=str(settings.STORAGE_URL.removeprefix("file://")) + "-tmp",
    )
    return result.photo_id


def _age(photo_id: int, seconds: int = 3600) -> None:
    from datetime import timedelta

    from snapmatch import db
    from snapmatch.schema import photos

    with db.transaction() as conn:
        conn.execute(
            update(photos).where(photos.c.id == photo_id).values(updated_at=db.utcnow() - timedelta(seconds=seconds))
        )


def test_sweeper_reenqueues_a_photo_whose_job_vanished(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    from jobs.maintenance import sweep
    from jobs.queues import enqueue_photos
    from snapmatch import db
    from snapmatch.schema import photos

    photo_id = _queued_photo()
    enqueue_photos(redis_lib.Redis.from_url(redis_url), [(photo_id, 0)])
    _age(photo_id)
    assert sweep()["photos_requeued"] == 0  # its job is still queued: leave it alone

    redis_lib.Redis.from_url(redis_url).flushdb()
    assert sweep()["photos_requeued"] == 1
    queue = Queue("photos", connection=redis_lib.Redis.from_url(redis_url))
    assert queue.job_ids == [f"photo-{photo_id}-1"]
    with db.connection() as conn:
        assert conn.execute(select(photos.c.enqueue_count).where(photos.c.id == photo_id)).scalar() == 1
    assert sweep()["photos_requeued"] == 0  # just re-enqueued: not stale any more


def test_sweeper_treats_a_job_on_a_dead_worker_as_abandoned(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    from rq.job import Job

    from jobs.maintenance import sweep
    from jobs.queues import enqueue_photos
    from jobs.worker_liveness import liveness_key

    r = redis_lib.Redis.from_url(redis_url)
    photo_id = _queued_photo()
    enqueue_photos(r, [(photo_id, 0)])
    r.hset(Job.key_for(f"photo-{photo_id}-0"), mapping={"status": "started", "worker_name": "w1"})
    _age(photo_id)
    r.set(liveness_key("w1"), "1", ex=10)
    assert sweep()["photos_requeued"] == 0  # worker alive: still running
    r.delete(liveness_key("w1"))
    assert sweep()["photos_requeued"] == 1


def test_sweeper_gives_up_after_too_many_generations(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    from jobs.maintenance import MAX_GENERATIONS, sweep
    from snapmatch import db
    from snapmatch.schema import photos

    photo_id = _queued_photo()
    with db.transaction() as conn:
        conn.execute(update(photos).where(photos.c.id == photo_id).values(enqueue_count=MAX_GENERATIONS - 1))
    _age(photo_id)
    assert sweep()["failed"] == 1
    with db.connection() as conn:
        row = conn.execute(select(photos.c.status, photos.c.error_code).where(photos.c.id == photo_id)).first()
    assert (row.status, row.error_code) == ("failed", "abandoned")


def test_a_queued_job_that_no_queue_holds_is_abandoned(env, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker killed between popping a job and marking it started leaves it "queued" nowhere
    (seen so on two sweeps: on the first it may be a live worker's pop, test_sweeper_robustness)."""
    from jobs import maintenance
    from jobs.maintenance import sweep

    monkeypatch.setattr(maintenance, "MISSING_JOB_GRACE_SECONDS", 0.0)
    from jobs.queues import enqueue_photos

    r = redis_lib.Redis.from_url(redis_url)
    photo_id = _queued_photo()
    enqueue_photos(r, [(photo_id, 0)])
    _age(photo_id)
    assert sweep()["photos_requeued"] == 0  # queued and in its queue: alive
    r.lrem("rq:queue:photos", 0, f"photo-{photo_id}-0")  # popped by a worker that then died
    assert sweep()["photos_requeued"] == 1
    assert Queue("photos", connection=r).job_ids == [f"photo-{photo_id}-1"]
