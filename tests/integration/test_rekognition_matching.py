"""The Rekognition engine follows the matching rules where they apply: one attendee per face, "not
me" that survives a re-run, borderline hits under "maybe". Real boto3 against the loopback
Rekognition (backed by the local engine; similarity = 100 - distance * 100 / 3), the real database,
the pipeline run in this process.
"""

from __future__ import annotations

import io
import os

import pytest
import redis as redis_lib
from sqlalchemy import select, update

from tests.fakes.rekognition_server import RekognitionFake
from tests.images import variant
from tests.integration.test_corrections import blended_face
from tests.realphotos import offline_aws_environment
from tests.workload import make_event, scratch_dir


@pytest.fixture
def rekognition(env, monkeypatch):  # type: ignore[no-untyped-def]
    from snapmatch import settings, storage

    with RekognitionFake(seed=7) as fake:
        offline_aws_environment(monkeypatch, AWS_ENDPOINT_URL_REKOGNITION=fake.endpoint_url, FACE_ENGINE="rekognition")
        monkeypatch.setenv("AWS_REQUESTS_PER_SECOND", "1000")
        settings.get_settings.cache_clear()
        storage._cache.clear()
        from snapmatch.faces.rekognition import RekognitionFaceEngine

        yield RekognitionFaceEngine.from_settings(
            settings.get_settings(), redis_lib.Redis.from_url(os.environ["REDIS_URL"])
        )


def test_rekognition_hits_follow_the_rules(env, rekognition, face_images) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import accounts, corrections, db, events, ingest, pipeline, selfies
    from snapmatch.redis_client import get_redis
    from snapmatch.schema import CorrectionVerdict, PhotoStatus, matches, maybe_matches, photos
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    settings = get_settings()
    storage = open_storage(settings.STORAGE_URL)
    redis = get_redis()
    event = make_event("Rekognition rules")
    batch = ingest.ensure_batch(event.id, event.owner_id, None)

    def add_photo(name: str, data: bytes) -> int:
        result = ingest.ingest_file(
            event_id=event.id,
            batch_id=batch,
            stream=io.BytesIO(data),
            filename=name,
            storage=storage,
            settings=settings,
            tmp_dir=scratch_dir(),
        )
        assert (
            pipeline.process_photo(result.photo_id, engine=rekognition, storage=storage, settings=settings, redis=redis)
            is pipeline.Outcome.DONE
        )
        return result.photo_id

    def attendee(email: str, selfie: bytes):  # type: ignore[no-untyped-def]
        user = accounts.create_user(email, "attendee", "long enough password")
        events.join_event(user, event.id, event.access_code)
        upload = selfies.put_selfie(
            user, event.id, io.BytesIO(selfie), storage=storage, settings=settings, tmp_dir=scratch_dir()
        )
        outcome = pipeline.process_selfie(
            upload.selfie_id,
            image_key=upload.image_key,
            engine=rekognition,
            storage=storage,
            settings=settings,
            redis=redis,
        )
        assert outcome is pipeline.Outcome.DONE
        return user

    obama = add_photo("obama.jpg", (face_images / "obama.jpg").read_bytes())
    obama3 = add_photo("obama3.jpg", (face_images / "obama3.jpg").read_bytes())
    borderline = add_photo("borderline.jpg", blended_face(face_images, 0.45))  # ~0.43: similarity ~86
    biden = add_photo("biden.jpg", (face_images / "biden.jpg").read_bytes())
    # Two attendees whose selfies both match Obama's faces: each face goes to one of them at most.
    alice = attendee("alice@example.com", (face_images / "obama_partial_face.jpg").read_bytes())
    carol = attendee("carol@example.com", (face_images / "obama_partial_face2.jpg").read_bytes())
    bob = attendee("bob@example.com", variant(face_images / "biden.jpg", flip=True, crop=0.8, seed=9))

    with db.connection() as conn:
        held = conn.execute(select(matches.c.face_id)).scalars().all()
        held += conn.execute(select(maybe_matches.c.face_id)).scalars().all()
    assert len(held) == len(set(held)), "a face is shown or offered to one attendee at most"
    mine = {u.email: corrections.my_photos(u, event.id) for u in (alice, carol, bob)}
    shown = {e: {p["photo_id"] for p in m["photos"]} for e, m in mine.items()}
    offered = {e: {p["photo_id"] for p in m["maybe"]} for e, m in mine.items()}
    assert shown["bob@example.com"] == {biden} and not offered["bob@example.com"]
    # Obama's photos go to the closer of the two Obama selfies; obama.jpg is 92 to alice's and 90.5
    # to carol's: too close to call (margin 2), so it is offered to alice, not shown to anyone.
    assert obama in offered["alice@example.com"] and obama not in shown["carol@example.com"]
    # The borderline face (similarity ~86, under REKOGNITION_SURE_SIMILARITY 90) is offered, never shown.
    assert borderline in offered["alice@example.com"] | offered["carol@example.com"]
    assert borderline not in shown["alice@example.com"] | shown["carol@example.com"]
    assert (
        obama3
        in shown["alice@example.com"]
        | shown["carol@example.com"]
        | offered["alice@example.com"]
        | offered["carol@example.com"]
    )

    # "Not me" hides a photo for good, even after the photo is indexed again.
    corrections.correct(alice, obama, CorrectionVerdict.NOT_ME, threshold=settings.FACE_MATCH_THRESHOLD)
    gone = corrections.my_photos(alice, event.id)
    assert obama not in {p["photo_id"] for p in gone["photos"] + gone["maybe"]}
    with db.transaction() as conn:
        conn.execute(update(photos).where(photos.c.id == obama).values(status=PhotoStatus.QUEUED.value))
    outcome = pipeline.process_photo(obama, engine=rekognition, storage=storage, settings=settings, redis=redis)
    assert outcome is pipeline.Outcome.DONE
    again = corrections.my_photos(alice, event.id)
    assert obama not in {p["photo_id"] for p in again["photos"] + again["maybe"]}
    # ... while carol, the only other candidate for that face, now gets it (90.5: sure).
    assert obama in {p["photo_id"] for p in corrections.my_photos(carol, event.id)["photos"]}
