"""The Rekognition face engine with the real boto3 client against the loopback fake server (real dlib matches).

Redis DB 11 holds the shared limiter and the cost counters; every test uses its own key prefix and event ids.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis as redis_lib
from botocore.exceptions import ClientError

from snapmatch.costs import BudgetExceeded
from snapmatch.faces.rekognition import (
    MAX_IMAGE_BYTES,
    QuotaExceeded,
    RekognitionFaceEngine,
    RetryLater,
    fit_image_bytes,
)
from snapmatch.settings import Settings
from tests.fakes.rekognition_server import RekognitionFake
from tests.realphotos import offline_aws_environment

REDIS_URL = os.environ.get("REKOGNITION_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
EVENT = 1


@pytest.fixture(scope="module")
def fake() -> Iterator[RekognitionFake]:
    # One server (and one load of the dlib models) for the module; each test resets faults and counters.
    with RekognitionFake(seed=7) as server:
        yield server


@pytest.fixture
def redis() -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis_lib.ConnectionError as exc:
        pytest.skip(f"real Redis not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def ledger_db(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A migrated SQLite database for the cost ledger the engine writes billable calls to."""
    from snapmatch import db, settings

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/ledger.db")
    settings.get_settings.cache_clear()
    db.dispose_all()
    db.migrate()
    yield
    db.dispose_all()
    settings.get_settings.cache_clear()


@pytest.fixture
def aws_env(fake: RekognitionFake, ledger_db: None, monkeypatch: pytest.MonkeyPatch) -> RekognitionFake:
    """The standard AWS environment pointing at the fake; nothing from the machine's own AWS setup leaks in."""
    fake.configure(
        throttle_rate=0.0,
        throttle_code="ThrottlingException",
        throttle_status=400,
        retry_after=None,
        latency=0.0,
        ops=(),
    )
    fake.reset_stats()
    with fake.service.lock:
        fake.service.collections.clear()
    for name in ("EVENT_BUDGET_USD", "AWS_BURST"):
        monkeypatch.delenv(name, raising=False)
    offline_aws_environment(monkeypatch, AWS_ENDPOINT_URL_REKOGNITION=fake.endpoint_url)
    monkeypatch.setenv("REDIS_PREFIX", f"test-rek-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("AWS_CONCURRENT_REQUESTS", "5")
    monkeypatch.setenv("AWS_REQUESTS_PER_SECOND", "1000")
    return fake


@pytest.fixture
def make_engine(aws_env: RekognitionFake, redis: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch):
    """make_engine(**env) -> a new engine (own Redis client, own boto3 client), as another process would build."""

    def make(**env: str) -> RekognitionFaceEngine:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return RekognitionFaceEngine.from_settings(Settings(), redis_lib.Redis.from_url(REDIS_URL))

    return make


@pytest.fixture(scope="module")
def images(face_images: Path) -> dict[str, bytes]:
    obama = cv2.imread(str(face_images / "obama.jpg"))
    biden = cv2.imread(str(face_images / "biden.jpg"))
    biden_resized = cv2.resize(biden, (round(biden.shape[1] * obama.shape[0] / biden.shape[0]), obama.shape[0]))
    return {
        # Two people in one photo: Obama on the left, Biden on the right.
        "group": cv2.imencode(".jpg", np.hstack([obama, biden_resized]))[1].tobytes(),
        "biden": (face_images / "biden.jpg").read_bytes(),
        "obama3": (face_images / "obama3.jpg").read_bytes(),
        "selfie": (face_images / "obama2.jpg").read_bytes(),
        "blank": cv2.imencode(".jpg", np.full((400, 400, 3), 200, np.uint8))[1].tobytes(),
    }


def test_client_honours_the_standard_aws_environment_and_never_retries(make_engine, aws_env) -> None:
    engine = make_engine()

    assert engine.client.meta.endpoint_url == aws_env.endpoint_url  # from AWS_ENDPOINT_URL_REKOGNITION
    assert engine.client.meta.region_name == "us-east-1"
    assert engine.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}

    aws_env.configure(throttle_rate=1.0)
    with pytest.raises(ClientError) as info:
        engine.client.list_collections()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert aws_env.stats()["total"] == 1  # botocore sent the request once: no hidden retry


def test_photos_and_selfies_match_in_both_directions(make_engine, aws_env, images) -> None:
    engine = make_engine()

    group = engine.index_photo(EVENT, 1, images["group"])
    biden = engine.index_photo(EVENT, 2, images["biden"])

    assert len(group) == 2 and len(biden) == 1
    stored = aws_env.faces(engine.collection_id(EVENT))  # the collection was created on demand
    assert sorted(f["ExternalImageId"] for f in stored.values()) == ["1", "1", "2"]
    obama_face = min(group, key=lambda f: f.left)  # Obama stands on the left
    assert obama_face.left < 0.5 < max(f.left for f in group)
    x, y, w, h = obama_face.pixel_box(1000, 800)
    assert 0 <= x < 500 and w > 50 and h > 50

    # New selfie against existing photos: the right photo and face, never the other person's photo.
    hits = engine.search_selfie(EVENT, images["selfie"])
    assert [(h.photo_id, h.face_id) for h in hits] == [(1, obama_face.face_id)]
    assert hits[0].similarity >= 80
    selfie = engine.index_selfie(EVENT, 7, images["selfie"])
    assert selfie is not None
    assert [h.photo_id for h in engine.match_selfie(EVENT, selfie.face_id)] == [1]

    # New photo against existing selfies.
    later = engine.index_photo(EVENT, 3, images["obama3"])
    matches = engine.match_photo_faces(EVENT, [f.face_id for f in later] + [biden[0].face_id])
    assert [h.selfie_id for h in matches[later[0].face_id]] == [7]
    assert matches[biden[0].face_id] == []

    report = engine.costs.provider_report()["rekognition"]
    assert report["calls"]["IndexFaces"] == 4
    assert report["events"][str(EVENT)]["faces_stored"] == 5
    assert report["calls_cost_usd"] == pytest.approx(0.001 * (4 + 1 + 1 + 2))


def test_images_without_faces(make_engine, images) -> None:
    engine = make_engine()

    assert engine.index_photo(EVENT, 1, images["blank"]) == []
    assert engine.search_selfie(EVENT, images["blank"]) is None
    assert engine.index_selfie(EVENT, 1, images["blank"]) is None


def test_delete_faces_removes_them_from_the_collection(make_engine, aws_env, images) -> None:
    engine = make_engine()
    faces = engine.index_photo(EVENT, 1, images["group"])

    deleted = engine.delete_faces(EVENT, [f.face_id for f in faces])

    assert sorted(deleted) == sorted(f.face_id for f in faces)
    assert aws_env.faces(engine.collection_id(EVENT)) == {}
    assert engine.search_selfie(EVENT, images["selfie"]) == []
    assert engine.costs.event_summary("rekognition", EVENT)["faces_stored"] == 0
    assert engine.delete_faces(EVENT + 1, ["no-such-face"]) == []  # no collection: nothing to do


def test_orphans_left_by_a_crash_are_purged(make_engine, aws_env, images) -> None:
    engine = make_engine()
    kept = engine.index_photo(EVENT, 1, images["biden"])
    orphans = engine.index_photo(EVENT, 2, images["group"])  # pretend the DB commit never happened

    purged = engine.purge_unknown_faces(EVENT, [f.face_id for f in kept])

    assert sorted(purged) == sorted(f.face_id for f in orphans)
    assert list(aws_env.faces(engine.collection_id(EVENT))) == [kept[0].face_id]


def test_images_are_shrunk_to_fit_five_megabytes(make_engine, aws_env, face_images) -> None:
    rng = np.random.default_rng(1)
    canvas = rng.integers(0, 256, size=(2600, 2600, 3), dtype=np.uint8)  # noise: JPEG cannot compress it
    face = cv2.imread(str(face_images / "obama.jpg"))
    canvas[700 : 700 + face.shape[0], 800 : 800 + face.shape[1]] = face
    big = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 97])[1].tobytes()
    assert len(big) > MAX_IMAGE_BYTES
    engine = make_engine()
    engine.ensure_collection(EVENT)

    with pytest.raises(ClientError) as info:  # the server enforces the limit, as Rekognition does
        engine.client.index_faces(CollectionId=engine.collection_id(EVENT), Image={"Bytes": big})
    assert info.value.response["Error"]["Code"] == "ImageTooLargeException"

    fitted = fit_image_bytes(big)
    assert len(fitted) <= MAX_IMAGE_BYTES
    assert fit_image_bytes(fitted) == fitted  # already fits: passed through untouched
    faces = engine.index_photo(EVENT, 1, big)
    assert len(faces) == 1
    assert abs(faces[0].left - (800 + face.shape[1] * 0.3) / 2600) < 0.1


def test_thirty_percent_throttling_still_succeeds_and_every_attempt_is_ours(make_engine, aws_env, images) -> None:
    engine = make_engine()
    faces = engine.index_photo(EVENT, 1, images["group"])
    aws_env.reset_stats()
    aws_env.configure(throttle_rate=0.3, throttle_code="mixed", retry_after=0.02)

    results = [engine.search_face(EVENT, faces[i % 2].face_id) for i in range(30)]

    assert all(r == [] for r in results)  # Obama and Biden do not match each other
    stats = aws_env.stats()
    assert stats["throttled"] > 0
    report = engine.costs.provider_report()["rekognition"]
    # Every request the server saw is one attempt our loop made: 30 answers plus each throttle, nothing else.
    assert stats["calls"]["SearchFaces"] == 30 + stats["throttled"]
    assert report["throttles_total"] == stats["throttled"]
    assert report["calls"]["SearchFaces"] == 30


def test_a_throttle_without_retry_delay_backs_off_through_a_shared_cooldown(make_engine, aws_env, images) -> None:
    engine = make_engine()
    faces = engine.index_photo(EVENT, 1, images["biden"])
    aws_env.configure(throttle_rate=1.0, throttle_status=429, throttle_code="TooManyRequests")

    with pytest.raises(QuotaExceeded) as info:
        engine.search_face(EVENT, faces[0].face_id, deadline=time.time() + 0.6)

    assert info.value.code == "quota_exceeded"
    # Backoff 0.125-0.25 s, then 0.25-0.5 s, ...: a handful of attempts in 0.6 s, not a hot loop.
    assert 2 <= aws_env.stats()["throttled"] <= 4


def test_a_long_retry_delay_reschedules_instead_of_holding_the_worker(make_engine, aws_env, images) -> None:
    engine = make_engine()
    faces = engine.index_photo(EVENT, 1, images["biden"])
    aws_env.reset_stats()
    aws_env.configure(throttle_rate=1.0, retry_after=30)

    started = time.monotonic()
    with pytest.raises(RetryLater) as info:
        engine.search_face(EVENT, faces[0].face_id)

    assert time.monotonic() - started < 2
    assert 25 < info.value.delay <= 30
    assert engine.limiter.state()["cooldown_until"] is not None
    # Another process is told to wait as well, without spending a request on it.
    with pytest.raises(RetryLater):
        make_engine().search_face(EVENT, faces[0].face_id)
    assert aws_env.stats()["total"] == 1


def test_a_deadline_already_past_ends_with_quota_exceeded_without_a_call(make_engine, aws_env) -> None:
    engine = make_engine()

    with pytest.raises(QuotaExceeded):
        engine.search_face(EVENT, "any", deadline=time.time() - 1)

    assert aws_env.stats()["total"] == 0


def test_the_event_budget_stops_paid_calls(make_engine, aws_env, images) -> None:
    engine = make_engine(EVENT_BUDGET_USD="0.0015")
    engine.index_photo(EVENT, 1, images["biden"])  # $0.001
    engine.index_photo(EVENT, 2, images["biden"])  # $0.002 after it: the check came before

    with pytest.raises(BudgetExceeded) as info:
        engine.index_photo(EVENT, 3, images["biden"])

    assert info.value.code == "budget_exceeded"
    assert aws_env.stats()["calls"]["IndexFaces"] == 3  # the first one found no collection yet
    engine.index_photo(EVENT + 1, 1, images["biden"])  # other events keep going


def test_concurrency_and_rate_hold_across_four_clients(make_engine, aws_env, images) -> None:
    setup = make_engine()
    faces = setup.index_photo(EVENT, 1, images["group"])
    engines = [make_engine(AWS_CONCURRENT_REQUESTS="2", AWS_REQUESTS_PER_SECOND="10", AWS_BURST="2") for _ in range(4)]
    aws_env.reset_stats()
    # Each call lasts longer than the gap between tokens (0.1 s at 10/s), so a third call is always
    # ready while two are in flight: the concurrency limit, not timing luck, is what stops it.
    aws_env.configure(latency=0.25, throttle_rate=0.3, retry_after=0.05, throttle_code="mixed")
    done: list[int] = []
    errors: list[BaseException] = []

    def work(engine: RekognitionFaceEngine) -> None:
        try:
            for i in range(6):
                engine.search_face(EVENT, faces[i % 2].face_id)
                done.append(1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == [] and len(done) == 24
    stats = aws_env.stats()
    assert stats["max_concurrent"] == 2  # reached, never exceeded
    assert stats["max_per_second"] <= 10 + 2 + 1  # rate + burst (+1: arrival jitter at a window's edge)
    assert stats["throttled"] > 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-amz-retry-after": "1500", "retry-after": "9"}, 1.5),  # botocore's millisecond header wins
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: no wait
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_delay_is_read_from_the_answer(headers: dict[str, str], expected: float | None) -> None:
    from snapmatch.faces.rekognition import retry_after_seconds

    error = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": headers},
        },
        "SearchFaces",
    )

    assert retry_after_seconds(error) == expected
