"""The sweeper against RQ's real dequeue (issue 13, item 12) and its crash cap (item 13), on SQLite
and PostgreSQL with a real Redis."""

from __future__ import annotations

import time

import redis as redis_lib
from rq import Queue
from sqlalchemy import select, update

from tests.images import jpeg
from tests.integration.test_schema_and_sweeper import _age, _queued_photo


def _photo(photo_id: int):  # type: ignore[no-untyped-def]
    from snapmatch import db
    from snapmatch.schema import photos

    with db.connection() as conn:
        return conn.execute(select(photos).where(photos.c.id == photo_id)).first()


def test_a_job_popped_by_a_worker_but_not_yet_started_is_not_run_twice(env, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker on several queues pops with BLPOP (no intermediate list, rq/queue.py dequeue_any) and
    marks the job started only in its work horse: in between, the job is "queued" in no queue."""
    from jobs import maintenance
    from jobs.queues import WORKER_QUEUES, enqueue_photos

    r = redis_lib.Redis.from_url(redis_url)
    photo_id = _queued_photo()
    enqueue_photos(r, [(photo_id, 0)])
    _age(photo_id)
    popped = r.blpop([f"rq:queue:{q}" for q in WORKER_QUEUES], 1)  # what Worker.dequeue_any does
    assert popped is not None and popped[1].decode() == f"photo-{photo_id}-0"
    assert maintenance.sweep()["photos_requeued"] == 0, "re-enqueued a job a live worker holds"
    assert Queue("photos", connection=r).job_ids == []
    # The worker marks it started (as its work horse does), on a live worker: never re-enqueued.
    from rq.job import Job

    from jobs.worker_liveness import liveness_key

    r.hset(Job.key_for(f"photo-{photo_id}-0"), mapping={"status": "started", "worker_name": "w1"})
    r.set(liveness_key("w1"), "1", ex=10)
    monkeypatch.setattr(maintenance, "MISSING_JOB_GRACE_SECONDS", 0.0)
    assert maintenance.sweep()["photos_requeued"] == 0
    assert _photo(photo_id).enqueue_count == 0


def test_a_job_in_no_queue_past_the_grace_is_re_enqueued(env, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same state that lasts: the worker died between its pop and the start."""
    from jobs import maintenance
    from jobs.queues import enqueue_photos

    r = redis_lib.Redis.from_url(redis_url)
    photo_id = _queued_photo()
    enqueue_photos(r, [(photo_id, 0)])
    _age(photo_id)
    r.lpop("rq:queue:photos")
    monkeypatch.setattr(maintenance, "MISSING_JOB_GRACE_SECONDS", 0.3)
    assert maintenance.sweep()["photos_requeued"] == 0  # first seen missing now
    time.sleep(0.4)
    assert maintenance.sweep()["photos_requeued"] == 1
    assert Queue("photos", connection=r).job_ids == [f"photo-{photo_id}-1"]


def test_provider_wait_reschedules_do_not_count_as_crashes(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    """Throttled five times (five planned generations), then a restart lost its job: re-enqueued, not abandoned."""
    from jobs.maintenance import MAX_GENERATIONS, sweep
    from snapmatch import db
    from snapmatch.schema import photos

    photo_id = _queued_photo()
    with db.transaction() as conn:
        conn.execute(
            update(photos)
            .where(photos.c.id == photo_id)
            .values(enqueue_count=MAX_GENERATIONS - 1, planned_generations=MAX_GENERATIONS - 1)
        )
    _age(photo_id)
    redis_lib.Redis.from_url(redis_url).flushdb()  # the restart: Redis came back empty
    result = sweep()
    assert result == {"photos_requeued": 1, "selfies_requeued": 0, "failed": 0}
    assert (_photo(photo_id).status, _photo(photo_id).enqueue_count) == ("queued", MAX_GENERATIONS)


def test_replacing_a_selfie_many_times_does_not_count_as_crashes(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    from jobs.maintenance import MAX_GENERATIONS, sweep
    from snapmatch import db
    from snapmatch.schema import selfies as selfie_table
    from tests.workload import joined_attendee, make_event, put_selfie

    event = make_event()
    user = joined_attendee(event)
    for seed in range(MAX_GENERATIONS + 1):
        upload = put_selfie(user, event.id, jpeg(seed=seed))
    with db.transaction() as conn:  # old enough for the sweeper; its job was never enqueued (Redis down)
        from datetime import timedelta

        conn.execute(
            update(selfie_table)
            .where(selfie_table.c.id == upload.selfie_id)
            .values(updated_at=db.utcnow() - timedelta(hours=1))
        )
    assert sweep() == {"photos_requeued": 0, "selfies_requeued": 1, "failed": 0}
