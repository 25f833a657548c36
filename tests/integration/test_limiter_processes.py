"""The provider limiter across real processes on a real Redis: limits hold, a killed holder's slot returns.

Children are started with the "spawn" context so each one has its own interpreter and Redis connection.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from snapmatch.limiter import Acquired, Denied, DenyReason, ProviderLimiter, ProviderLimits, RateLimitExceeded

# DB 14 of the Redis the other tests use (TEST_REDIS_URL), never the DBs they flush (2-9).
REDIS_URL = os.environ.get(
    "LIMITER_TEST_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/14"
)


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.skip(f"real Redis not reachable at {REDIS_URL} ({error}); start redis-server to run this test")
    return client


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards so the shared DB keeps nothing of ours."""
    own = f"test-limiter-{uuid.uuid4().hex[:12]}"
    yield own
    keys = list(redis_client.scan_iter(match=f"{own}:*"))
    if keys:
        redis_client.delete(*keys)


def hammer(prefix: str, limits: ProviderLimits, start_at: float, stop_at: float, seed: int) -> None:
    """Child process: take leases in a loop, hold each a random short time, record (granted, released)."""
    client = redis.Redis.from_url(REDIS_URL)
    limiter = ProviderLimiter(client, limits, prefix=prefix)
    rng = random.Random(seed)
    records = []
    time.sleep(max(0.0, start_at - time.time()))  # all children start together, after their imports
    while time.time() < stop_at:
        try:
            lease = limiter.acquire(timeout=stop_at - time.time())
        except RateLimitExceeded:
            break
        time.sleep(rng.uniform(0.02, 0.25))
        # From the grant time Redis recorded to just before the release call: inside the lease's real
        # lifetime, so the overlap measured from these intervals can never exceed the real one.
        records.append(json.dumps([lease.acquired_at, time.time()]))
        lease.release()
    if records:
        client.rpush(f"{prefix}:results", *records)


def hold_forever(prefix: str, limits: ProviderLimits) -> None:
    """Child process: take one lease, say so, then hang until killed."""
    client = redis.Redis.from_url(REDIS_URL)
    result = ProviderLimiter(client, limits, prefix=prefix).try_acquire()
    assert isinstance(result, Acquired), result
    client.rpush(f"{prefix}:held", json.dumps([result.lease_id, result.expires_at]))
    time.sleep(3600)


def test_six_processes_respect_rate_and_concurrency(redis_client: redis.Redis, prefix: str) -> None:
    limits = ProviderLimits(name="hammered", rate=20.0, burst=5, concurrency=3, lease_seconds=10)
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5
    stop_at = start_at + 3.0
    children = [ctx.Process(target=hammer, args=(prefix, limits, start_at, stop_at, n)) for n in range(6)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=20)
        assert child.exitcode == 0, f"child exited with {child.exitcode}"

    intervals = sorted(json.loads(raw) for raw in redis_client.lrange(f"{prefix}:results", 0, -1))
    grants = [granted for granted, _ in intervals]
    # The run did real work: the initial burst plus most of 3 s of tokens.
    assert len(grants) >= limits.burst + 0.8 * limits.rate * 3.0, len(grants)

    # Concurrency: sweep the interval ends.
    # (time, +1 grant / -1 release); sorting puts -1 before +1 at the same instant.
    events = sorted([(g, 1) for g, _ in intervals] + [(r, -1) for _, r in intervals])
    in_flight = max_in_flight = 0
    for _, change in events:
        in_flight += change
        max_in_flight = max(max_in_flight, in_flight)
    assert max_in_flight <= limits.concurrency
    assert max_in_flight >= 2  # the holds were long enough for calls to overlap at all

    # Rate: no 1 s window holds more than one second of tokens plus the burst (windows start at a grant).
    busiest = max(sum(1 for other in grants if g <= other < g + 1.0) for g in grants)
    assert busiest <= limits.rate * 1.0 + limits.burst, busiest


def test_killed_holder_slot_comes_back_after_lease_seconds(redis_client: redis.Redis, prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    crashing = ProviderLimits(name="crashy", rate=1000.0, burst=10, concurrency=1, lease_seconds=1.0)
    # Same provider and keys, but this process holds its own leases longer than the test lasts.
    limiter = ProviderLimiter(redis_client, dataclasses.replace(crashing, lease_seconds=30.0), prefix)

    child = ctx.Process(target=hold_forever, args=(prefix, crashing))
    child.start()
    try:
        reply = redis_client.blpop([f"{prefix}:held"], timeout=15)
        assert reply is not None, "child never took its lease"
        lease_id, expires_at = json.loads(reply[1])
    finally:
        child.kill()  # SIGKILL: no release, no cleanup, like a worker lost to the OOM killer
        child.join(timeout=10)
    killed_at = time.time()
    assert child.exitcode == -9

    refused = limiter.try_acquire()
    assert isinstance(refused, Denied) and refused.reason == DenyReason.CONCURRENCY, refused
    assert 0 < refused.retry_after <= crashing.lease_seconds

    while True:
        result = limiter.try_acquire()
        if isinstance(result, Acquired):
            break
        assert time.time() < killed_at + crashing.lease_seconds + 0.5, "slot did not come back"
        time.sleep(0.01)
    assert result.acquired_at >= expires_at  # not a moment before the dead lease ran out
    assert redis_client.zscore(limiter.leases_key, lease_id) is None

    # The reclaimed slot is the only one: the limit still holds.
    second = limiter.try_acquire()
    assert isinstance(second, Denied) and second.reason == DenyReason.CONCURRENCY, second
    assert limiter.state()["in_flight"] == 1
    assert limiter.release(result.lease_id, "success")
    assert isinstance(limiter.try_acquire(), Acquired)
