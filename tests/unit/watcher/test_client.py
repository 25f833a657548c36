"""The watcher's retry policy: what is retried and how long it waits."""

from __future__ import annotations

import random
import threading
import time
from email.utils import formatdate

import pytest

from snapmatch.watcher.client import BACKOFF_CAP, backoff_delay, is_retryable_status, parse_retry_after
from snapmatch.watcher.run import RetryGate


@pytest.mark.parametrize(
    ("status", "retry"),
    [(500, True), (502, True), (503, True), (429, True), (400, False), (401, False), (404, False), (413, False)],
)
def test_which_statuses_are_retried(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        ceiling = min(BACKOFF_CAP, 0.5 * 2**attempt)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
        assert min(delays) < ceiling * 0.2


def test_backoff_never_undercuts_retry_after() -> None:
    assert all(backoff_delay(1, retry_after=7, rng=random.Random(i)) >= 7 for i in range(50))


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("12") == 12
    assert parse_retry_after(formatdate(1000 + 30, usegmt=True), now=1000) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600  # bounded


def test_the_gate_holds_every_thread_until_the_backoff_has_passed() -> None:
    gate = RetryGate()
    stop = threading.Event()
    delay = gate.failed(retry_after=0.3)
    assert delay >= 0.3
    t0 = time.monotonic()
    assert gate.wait(stop)
    assert time.monotonic() - t0 >= 0.25
    gate.failed(retry_after=5)
    stop.set()
    assert not gate.wait(stop)  # Ctrl-C does not wait the backoff out


def test_the_multipart_body_is_byte_for_byte_what_requests_would_send() -> None:
    from urllib3.filepost import encode_multipart_formdata

    from snapmatch.watcher.client import MultipartBody, UploadItem

    items = [
        UploadItem("IMG_0001.jpg", b"\xff\xd8 photo one \xff\xd9", "image/jpeg"),
        UploadItem('Café "best" shot.png', b"\x89PNG photo two", "image/png"),
    ]
    body = MultipartBody({"batch_id": "b1"}, items, boundary="xyz")
    expected, content_type = encode_multipart_formdata(
        [("batch_id", "b1")] + [("files", (i.filename, i.data, i.content_type)) for i in items], boundary="xyz"
    )
    assert b"".join(body) == expected and len(body) == len(expected)
    assert body.content_type == content_type
    assert any(chunk is items[0].data for chunk in body)  # the photo's bytes are not copied
