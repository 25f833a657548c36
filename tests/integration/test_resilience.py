"""Nothing accepted is lost: a worker SIGKILLed mid-batch, and Redis flushed mid-batch.

Each test runs against a private redis-server (so FLUSHALL touches nothing else), two real
workers and the real scheduler; every photo has exactly one real face.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis as redis_lib

from tests.conftest import free_port
from tests.workload import BATCH, assert_all_done_once, counts, ingest_all, one_face_photos, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def private_redis(env, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from snapmatch import settings

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis_lib.ConnectionError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    env["REDIS_URL"] = url
    monkeypatch.setenv("REDIS_URL", url)
    settings.get_settings.cache_clear()
    yield client
    proc.terminate()
    proc.wait()


def start_cluster(processes) -> list[subprocess.Popen]:  # type: ignore[no-untyped-def]
    workers = [processes.worker("res-worker-1"), processes.worker("res-worker-2")]
    processes.start(sys.executable, "-m", "jobs.scheduler", name="scheduler")
    return workers


def test_sigkill_of_a_worker_mid_batch_loses_nothing(env, private_redis, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    ids = ingest_all(one_face_photos(face_images))
    workers = start_cluster(processes)
    wait_until(lambda: counts().get("done", 0) >= 40, 120, "40 photos done")
    # kill -9 the worker and its work horse (a machine dying), mid-job
    wait_until(lambda: counts().get("processing", 0) > 0, 30, "a photo in progress")
    processes.signal_group(workers[0], signal.SIGKILL)
    killed_at = time.time()
    wait_until(lambda: counts().get("done", 0) == BATCH, 240, "every photo done after the kill")
    assert_all_done_once(ids)
    assert time.time() - killed_at < 240


def test_redis_flushall_mid_batch_loses_nothing(env, private_redis, processes, face_images) -> None:  # type: ignore[no-untyped-def]
    ids = ingest_all(one_face_photos(face_images))
    start_cluster(processes)
    wait_until(lambda: counts().get("done", 0) >= 40, 120, "40 photos done")
    before = private_redis.dbsize()
    private_redis.flushall()
    # Live processes write again at once (liveness keys, metrics, the next sweep): the flush took
    # effect when the hundreds of job keys are gone, not when the database stays empty.
    after = private_redis.dbsize()
    assert before > 40 and after < 20, (before, after)
    wait_until(lambda: counts().get("done", 0) == BATCH, 240, "every photo done after FLUSHALL")
    assert_all_done_once(ids)
