"""A workload for pipeline tests: many distinct photos with one real face each, ingested through the
domain (as the upload endpoint does), and the checks that every photo ended done exactly once."""

from __future__ import annotations

import io
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from tests.images import compose, head_crop

BATCH = 200


@lru_cache(maxsize=2)
def one_face_photos(face_images: Path, count: int = BATCH) -> list[bytes]:
    """``count`` distinct photos, each with one real face (Obama, Biden alternately) on its own background."""
    crops = [head_crop(face_images / "obama.jpg"), head_crop(face_images / "biden.jpg")]
    photos = []
    for i in range(count):
        rng = np.random.default_rng(i)
        width = int(rng.integers(700, 1000))
        photos.append(compose([crops[i % 2]], size=(width, int(width * 0.75)), seed=i))
    return photos


def scratch_dir() -> str:
    return str(Path(os.environ["SNAPMATCH_VAR_DIR"]) / "tmp")


def make_event(name: str = "Marathon"):  # type: ignore[no-untyped-def]
    """A photographer and their event, made through the domain."""
    from snapmatch import accounts, events

    user = accounts.create_user(f"pho-{time.monotonic_ns()}@example.com", "photographer", "long enough password")
    return events.create_event(user, name)


def ingest_all(photos: list[bytes], event=None) -> list[int]:  # type: ignore[no-untyped-def]
    """Store, record and enqueue every photo, as POST /api/events/<id>/photos does."""
    from jobs.queues import enqueue_photos
    from snapmatch import ingest
    from snapmatch.redis_client import get_redis
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    event = event or make_event()
    batch_id = ingest.ensure_batch(event.id, event.owner_id, None)
    ids = []
    for i, data in enumerate(photos):
        result = ingest.ingest_file(
            event_id=event.id,
            batch_id=batch_id,
            stream=io.BytesIO(data),
            filename=f"p{i}.jpg",
            storage=open_storage(settings.STORAGE_URL),
            settings=settings,
            tmp_dir=scratch_dir(),
        )
        assert result.status == "queued", result
        ids.append(result.photo_id)
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


def joined_attendee(event, email: str | None = None):  # type: ignore[no-untyped-def]
    """An attendee who joined ``event`` with its access code, made through the domain."""
    from snapmatch import accounts, events

    email = email or f"att-{time.monotonic_ns()}@example.com"
    user = accounts.create_user(email, "attendee", "long enough password")
    events.join_event(user, event.id, event.access_code)
    return user


def put_selfie(user, event_id: int, data: bytes):  # type: ignore[no-untyped-def]
    """Store ``data`` as the attendee's selfie, as PUT /api/events/<id>/selfie does (not enqueued)."""
    from snapmatch import selfies
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    return selfies.put_selfie(
        user,
        event_id,
        io.BytesIO(data),
        storage=open_storage(settings.STORAGE_URL),
        settings=settings,
        tmp_dir=scratch_dir(),
    )
