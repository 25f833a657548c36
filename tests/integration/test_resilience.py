"""Nothing accepted is lost: a worker SIGKILLed mid-batch, and Redis flushed mid-batch.

Each test runs against a private redis-server (so FLUSHALL touches nothing else), two real
workers and the real scheduler; every photo has exactly one real face.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis as redis_lib
from sqlalchemy import func, select

from tests.conftest import free_port
from tests.images import compose, head_crop

pytestmark = pytest.mark.slow
BATCH = 200


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


@pytest.fixture(scope="session")
def one_face_photos(face_images: Path) -> list[bytes]:
    """BATCH distinct photos, each with one real face (Obama or Biden) on its own background."""
    crops = [head_crop(face_images / "obama.jpg"), head_crop(face_images / "biden.jpg")]
    photos = []
    for i in range(BATCH):
        rng = np.random.default_rng(i)
        width = int(rng.integers(700, 1000))
        photos.append(compose([crops[i % 2]], size=(width, int(width * 0.75)), seed=i))
    return photos


def ingest_all(photos: list[bytes]) -> list[int]:
    from jobs.queues import enqueue_photos
    from snapmatch import accounts, events, ingest
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    user = accounts.create_user("pho@example.com", "photographer", "long enough password")
    event = events.create_event(user, "Marathon")
    batch_id = ingest.ensure_batch(event.id, user.id, None)
    import io

    ids = []
    for i, data in enumerate(photos):
        result = ingest.ingest_file(
            event_id=event.id,
            batch_id=batch_id,
            stream=io.BytesIO(data),
            filename=f"p{i}.jpg",
            storage=open_storage(settings.STORAGE_URL),
            settings=settings,
            tmp_dir=str(Path(settings.STORAGE_URL.removeprefix("file://")).parent / "tmp"),
        )
        assert result.status == "queued", result
        ids.append(result.photo_id)
    from snapmatch.redis_client import get_redis

    enqueue_photos(get_redis(), [(i, 0) for i in ids])
    return ids


def counts() -> dict[str, int]:
    from snapmatch import db
    from snapmatch.schema import photos

    with db.connection() as conn:
        return dict(conn.execute(select(photos.c.status, func.count()).group_by(photos.c.status)).all())


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; photo counts: {counts()}")


def assert_all_done_once(ids: list[int]) -> None:
    from snapmatch import db
    from snapmatch.schema import faces, photos

    with db.connection() as conn:
        assert dict(conn.execute(select(photos.c.status, func.count()).group_by(photos.c.status)).all()) == {
            "done": len(ids)
        }
        per_photo = dict(conn.execute(select(faces.c.photo_id, func.count()).group_by(faces.c.photo_id)).all())
        face_counts = dict(conn.execute(select(photos.c.id, photos.c.face_count)).all())
    assert per_photo == {i: 1 for i in ids}, "every photo has exactly its one face, none twice"
    assert face_counts == {i: 1 for i in ids}


def start_cluster(processes) -> list[subprocess.Popen]:  # type: ignore[no-untyped-def]
    workers = [processes.worker("res-worker-1"), processes.worker("res-worker-2")]
    processes.start(sys.executable, "-m", "jobs.scheduler", name="scheduler")
    return workers


def test_sigkill_of_a_worker_mid_batch_loses_nothing(env, private_redis, processes, one_face_photos) -> None:  # type: ignore[no-untyped-def]
    ids = ingest_all(one_face_photos)
    workers = start_cluster(processes)
    wait_until(lambda: counts().get("done", 0) >= 40, 120, "40 photos done")
    # kill -9 the worker and its work horse (a machine dying), mid-job
    wait_until(lambda: counts().get("processing", 0) > 0, 30, "a photo in progress")
    processes.signal_group(workers[0], signal.SIGKILL)
    killed_at = time.time()
    wait_until(lambda: counts().get("done", 0) == BATCH, 240, "every photo done after the kill")
    assert_all_done_once(ids)
    assert time.time() - killed_at < 240


def test_redis_flushall_mid_batch_loses_nothing(env, private_redis, processes, one_face_photos) -> None:  # type: ignore[no-untyped-def]
    ids = ingest_all(one_face_photos)
    start_cluster(processes)
    wait_until(lambda: counts().get("done", 0) >= 40, 120, "40 photos done")
    private_redis.flushall()
    assert private_redis.dbsize() == 0
    wait_until(lambda: counts().get("done", 0) == BATCH, 240, "every photo done after FLUSHALL")
    assert_all_done_once(ids)
