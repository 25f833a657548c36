"""Scheduled clean-up (temp files, old job records, old progress streams) and the record of each
schedule's last run, against a real Redis."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import redis as redis_lib
from rq import Queue
from rq.job import Job

from jobs import schedules
from jobs.scheduler import build_scheduler
from snapmatch.progress import stream_key
from snapmatch.settings import get_settings


def test_old_temp_files_go_and_recent_ones_stay(env) -> None:  # type: ignore[no-untyped-def]
    tmp = schedules.temp_dirs()[0]
    tmp.mkdir(parents=True, exist_ok=True)
    old, recent = tmp / "old.part", tmp / "recent.part"
    old.write_bytes(b"x")
    recent.write_bytes(b"y")
    month_ago = time.time() - (get_settings().TEMP_FILE_MAX_AGE_DAYS + 1) * 86400
    os.utime(old, (month_ago, month_ago))
    assert schedules.remove_old_temp_files() == {"files_removed": 1}
    assert not old.exists() and recent.exists()


def test_old_job_records_and_progress_streams_go(env, redis_url) -> None:  # type: ignore[no-untyped-def]
    r = redis_lib.Redis.from_url(redis_url)
    queue = Queue("maintenance", connection=r)
    old_job = queue.enqueue("jobs.schedules.record_queue_history", result_ttl=-1)
    new_job = queue.enqueue("jobs.schedules.record_queue_history", result_ttl=-1)
    long_ago = datetime.now(UTC) - timedelta(days=get_settings().JOB_RECORD_MAX_AGE_DAYS + 1)
    for job, ended in ((old_job, long_ago), (new_job, datetime.now(UTC))):
        r.hset(Job.key_for(job.id), mapping={"status": "finished", "ended_at": ended.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
    r.xadd(stream_key("old-batch"), {"data": "{}"}, id=f"{int(long_ago.timestamp() * 1000)}-0")
    r.xadd(stream_key("new-batch"), {"data": "{}"})
    result = schedules.remove_old_job_records()
    assert result == {"job_records_removed": 1, "progress_streams_removed": 1}
    assert not r.exists(Job.key_for(old_job.id)) and r.exists(Job.key_for(new_job.id))
    assert not r.exists(stream_key("old-batch")) and r.exists(stream_key("new-batch"))

    runs = schedules.last_runs(r)
    assert runs["remove_old_job_records"]["outcome"] == "ok"
    assert runs["remove_old_job_records"]["result"] == result
    assert runs["sweep"]["outcome"] == "never_run"


def test_every_schedule_is_registered_with_rq_cron(env) -> None:  # type: ignore[no-untyped-def]
    scheduler = build_scheduler()
    names = {job.name for job in scheduler.get_jobs()}
    assert names == {s.name for s in schedules.SCHEDULES}
    assert {"sweep", "remove_old_temp_files", "remove_old_job_records", "record_queue_history"} <= names
