"""Unit tests for the Redis provider limiter, run against fakeredis (the Lua scripts execute in lupa).

Timings use tiny rates and lease times with real sleeps, because the scripts read Redis TIME on purpose.
"""

from __future__ import annotations

import dataclasses
import time

import fakeredis
import pytest

from snapmatch.limiter import (
    Acquired,
    Denied,
    DenyReason,
    Outcome,
    ProviderLimiter,
    ProviderLimits,
    RateLimitExceeded,
    limits_for,
)
from snapmatch.settings import Settings


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def make_limiter(server):
    """Build limiters sharing one fake Redis server, each with its own client like separate processes."""

    def make(**overrides) -> ProviderLimiter:
        values = {"name": "testprov", "rate": 1000.0, "burst": 100, "concurrency": 100}
        values.update(overrides)
        return ProviderLimiter(fakeredis.FakeRedis(server=server), ProviderLimits(**values), prefix="t")

    return make


def acquired(result) -> Acquired:
    assert isinstance(result, Acquired), result
    return result


def denied(result, reason: DenyReason) -> Denied:
    assert isinstance(result, Denied), result
    assert result.reason == reason
    return result


def snapshot(limiter: ProviderLimiter) -> dict:
    r = limiter.redis
    return {
        "bucket": r.hgetall(limiter.bucket_key),
        "leases": r.zrange(limiter.leases_key, 0, -1, withscores=True),
        "cooldown": r.get(limiter.cooldown_key),
        "breaker": r.hgetall(limiter.breaker_key),
    }


def test_burst_then_one_token_per_interval(make_limiter):
    limiter = make_limiter(rate=10.0, burst=3)
    for _ in range(3):
        limiter.release(acquired(limiter.try_acquire()).lease_id, Outcome.SUCCESS)
    refused = denied(limiter.try_acquire(), DenyReason.RATE)
    # Next token is due 1/rate after the burst was taken, minus the few ms spent since.
    assert 0.05 < refused.retry_after <= 0.1
    assert not refused.can_free_sooner
    time.sleep(refused.retry_after + 0.005)
    acquired(limiter.try_acquire())
    denied(limiter.try_acquire(), DenyReason.RATE)


def test_refill_is_capped_at_burst(make_limiter):
    # 100 ms per token: the three acquisitions below stay within one token's time even on a loaded machine.
    limiter = make_limiter(rate=10.0, burst=2)
    acquired(limiter.try_acquire())
    acquired(limiter.try_acquire())
    time.sleep(1.0)  # 10 tokens' worth of time, but the bucket holds 2
    assert limiter.state()["tokens"] == 2.0
    acquired(limiter.try_acquire())
    acquired(limiter.try_acquire())
    denied(limiter.try_acquire(), DenyReason.RATE)


def test_cost_takes_several_tokens_and_cannot_exceed_burst(make_limiter):
    limiter = make_limiter(rate=1.0, burst=3)
    acquired(limiter.try_acquire(cost=2))
    refused = denied(limiter.try_acquire(cost=2), DenyReason.RATE)
    assert 0.9 < refused.retry_after <= 1.0
    acquired(limiter.try_acquire(cost=1))
    with pytest.raises(ValueError):
        limiter.try_acquire(cost=4)


def test_denial_leaves_redis_untouched(make_limiter):
    limiter = make_limiter(rate=1.0, burst=1, concurrency=2, lease_seconds=0.05)
    acquired(limiter.try_acquire())
    time.sleep(0.1)  # the lease is now expired but still stored: a denial must not even clean it up
    before = snapshot(limiter)
    assert len(before["leases"]) == 1
    denied(limiter.try_acquire(), DenyReason.RATE)
    assert snapshot(limiter) == before

    limiter = make_limiter(name="other", rate=1000.0, burst=10, concurrency=1)
    acquired(limiter.try_acquire())
    before = snapshot(limiter)
    denied(limiter.try_acquire(), DenyReason.CONCURRENCY)
    assert snapshot(limiter) == before  # no token spent by the refused attempt
    assert float(before["bucket"][b"tokens"]) == 9.0


def test_concurrency_limit_and_release(make_limiter):
    limiter = make_limiter(concurrency=2, lease_seconds=30)
    first = acquired(limiter.try_acquire())
    acquired(limiter.try_acquire())
    refused = denied(limiter.try_acquire(), DenyReason.CONCURRENCY)
    # Upper bound (the oldest lease's expiry), since a release can come any time.
    assert 29 < refused.retry_after <= 30
    assert refused.can_free_sooner
    assert limiter.release(first.lease_id, Outcome.SUCCESS) is True
    acquired(limiter.try_acquire())


def test_expired_lease_frees_its_slot(make_limiter):
    limiter = make_limiter(concurrency=1, lease_seconds=0.2)
    lost = acquired(limiter.try_acquire())  # a holder that "crashes" and never releases
    refused = denied(limiter.try_acquire(), DenyReason.CONCURRENCY)
    assert 0.1 < refused.retry_after <= 0.2
    time.sleep(0.25)
    assert limiter.state()["in_flight"] == 0
    acquired(limiter.try_acquire())
    assert limiter.redis.zscore(limiter.leases_key, lost.lease_id) is None  # cleaned up on the grant
    assert limiter.release(lost.lease_id, Outcome.SUCCESS) is False


def test_renew_keeps_a_long_call_alive(make_limiter):
    limiter = make_limiter(concurrency=1, lease_seconds=0.3)
    held = acquired(limiter.try_acquire())
    time.sleep(0.2)
    expires_at = limiter.renew(held.lease_id)
    assert expires_at is not None and expires_at > held.expires_at
    time.sleep(0.2)  # 0.4 s after acquiring: would have expired without the renewal
    denied(limiter.try_acquire(), DenyReason.CONCURRENCY)
    time.sleep(0.2)
    assert limiter.renew(held.lease_id) is None  # lost: someone else may own the slot now


def test_cooldown_is_shared_and_only_extends(make_limiter):
    worker_a = make_limiter()
    worker_b = make_limiter()
    until = worker_a.cooldown(0.4)
    refused = denied(worker_b.try_acquire(), DenyReason.COOLDOWN)
    assert 0.3 < refused.retry_after <= 0.4
    assert worker_b.cooldown(0.1) == until  # a shorter delay does not cut the longer one
    assert worker_b.state()["cooldown_until"] == pytest.approx(until)
    longer = worker_b.cooldown(0.6)
    assert longer > until
    assert 0.5 < denied(worker_a.try_acquire(), DenyReason.COOLDOWN).retry_after <= 0.6
    time.sleep(0.65)
    acquired(worker_a.try_acquire())
    assert worker_a.state()["cooldown_until"] is None


def test_breaker_opens_after_consecutive_failures(make_limiter):
    limiter = make_limiter(breaker_failures=3, breaker_seconds=0.3)

    def call(outcome: Outcome) -> None:
        limiter.release(acquired(limiter.try_acquire()).lease_id, outcome)

    call(Outcome.FAILURE)
    call(Outcome.FAILURE)
    call(Outcome.SUCCESS)  # resets the run
    call(Outcome.FAILURE)
    call(Outcome.THROTTLED)  # a 429 is not the provider failing
    call(Outcome.FAILURE)
    assert limiter.state()["breaker"] == "closed"
    assert limiter.state()["consecutive_failures"] == 2
    call(Outcome.FAILURE)
    state = limiter.state()
    assert state["breaker"] == "open"
    assert state["consecutive_failures"] == 3
    refused = denied(limiter.try_acquire(), DenyReason.BREAKER_OPEN)
    assert 0.2 < refused.retry_after <= 0.3
    assert not refused.can_free_sooner


def open_breaker(limiter: ProviderLimiter) -> None:
    for _ in range(limiter.limits.breaker_failures):
        limiter.release(acquired(limiter.try_acquire()).lease_id, Outcome.FAILURE)
    assert limiter.state()["breaker"] == "open"


def test_half_open_probe_success_closes(make_limiter):
    limiter = make_limiter(breaker_failures=2, breaker_seconds=0.2)
    open_breaker(limiter)
    time.sleep(0.25)
    assert limiter.state()["breaker"] == "half_open"
    probe = acquired(limiter.try_acquire())
    assert probe.probe
    refused = denied(limiter.try_acquire(), DenyReason.BREAKER_OPEN)  # exactly one probe
    assert refused.can_free_sooner
    limiter.release(probe.lease_id, Outcome.SUCCESS)
    state = limiter.state()
    assert (state["breaker"], state["consecutive_failures"]) == ("closed", 0)
    assert not acquired(limiter.try_acquire()).probe
    acquired(limiter.try_acquire())


def test_half_open_probe_failure_reopens(make_limiter):
    limiter = make_limiter(breaker_failures=2, breaker_seconds=0.2)
    open_breaker(limiter)
    time.sleep(0.25)
    probe = acquired(limiter.try_acquire())
    limiter.release(probe.lease_id, Outcome.FAILURE)
    assert limiter.state()["breaker"] == "open"
    refused = denied(limiter.try_acquire(), DenyReason.BREAKER_OPEN)
    assert 0.15 < refused.retry_after <= 0.2  # a full breaker_seconds again


def test_crashed_probe_lets_another_probe_through(make_limiter):
    limiter = make_limiter(breaker_failures=1, breaker_seconds=0.1, lease_seconds=0.2)
    open_breaker(limiter)
    time.sleep(0.15)
    crashed = acquired(limiter.try_acquire())
    assert crashed.probe
    denied(limiter.try_acquire(), DenyReason.BREAKER_OPEN)
    time.sleep(0.25)
    second = acquired(limiter.try_acquire())
    assert second.probe
    limiter.release(crashed.lease_id, Outcome.SUCCESS)  # too late: no longer the probe, changes nothing
    assert limiter.state()["breaker"] == "half_open"
    limiter.release(second.lease_id, Outcome.SUCCESS)
    assert limiter.state()["breaker"] == "closed"


def test_acquire_waits_for_a_token_within_timeout(make_limiter):
    limiter = make_limiter(rate=20.0, burst=1)
    limiter.acquire(timeout=1).release()
    started = time.monotonic()
    limiter.acquire(timeout=1).release()
    assert 0.03 < time.monotonic() - started < 0.2


def test_acquire_gives_up_at_once_when_the_wait_is_too_long(make_limiter):
    limiter = make_limiter(rate=1.0, burst=1)
    limiter.acquire(timeout=1).release()
    started = time.monotonic()
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire(timeout=0.2)
    assert time.monotonic() - started < 0.1  # no point sleeping 0.2 s for a token due in ~1 s
    error = caught.value
    assert (error.code, error.provider, error.reason) == ("rate_limited", "testprov", DenyReason.RATE)
    assert 0.8 < error.retry_after <= 1.0


def test_acquire_polls_for_a_slot_until_timeout(make_limiter):
    limiter = make_limiter(concurrency=1, lease_seconds=10)
    held = limiter.acquire(timeout=1)
    started = time.monotonic()
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 0.3
    assert caught.value.reason == DenyReason.CONCURRENCY
    assert 9 < caught.value.retry_after <= 10
    held.release()
    limiter.acquire(timeout=0).release()


def test_lease_context_manager_reports_outcomes(make_limiter):
    limiter = make_limiter(breaker_failures=5)
    with limiter.lease(timeout=1) as held:
        assert limiter.state()["in_flight"] == 1
    assert held.released

    with pytest.raises(RuntimeError), limiter.lease(timeout=1):
        raise RuntimeError("provider exploded")
    assert limiter.state()["consecutive_failures"] == 1

    with limiter.lease(timeout=1) as held:
        held.throttled(2.0)
    state = limiter.state()
    assert state["consecutive_failures"] == 1  # throttling is not a failure
    assert state["cooldown_until"] is not None
    assert state["in_flight"] == 0
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire(timeout=0.5)
    assert caught.value.reason == DenyReason.COOLDOWN

    limiter.redis.delete(limiter.cooldown_key)
    with limiter.lease(timeout=1):
        pass
    assert limiter.state()["consecutive_failures"] == 0


def test_state_fields(make_limiter):
    limiter = make_limiter(rate=2.0, burst=4, concurrency=3)
    state = limiter.state()
    assert state == {
        "provider": "testprov",
        "tokens": 4.0,
        "in_flight": 0,
        "cooldown_until": None,
        "breaker": "closed",
        "breaker_open_until": None,
        "consecutive_failures": 0,
        "limits": dataclasses.asdict(limiter.limits),
    }
    acquired(limiter.try_acquire())
    acquired(limiter.try_acquire())
    state = limiter.state()
    assert state["in_flight"] == 2
    assert 2.0 <= state["tokens"] < 2.1
    assert limiter.state()["tokens"] >= state["tokens"]  # reading refills in the view only
    assert float(limiter.redis.hget(limiter.bucket_key, "tokens")) == pytest.approx(2.0, abs=0.05)


def test_every_key_expires(make_limiter):
    limiter = make_limiter(rate=10.0, burst=2, breaker_failures=3, lease_seconds=5)
    limiter.release(acquired(limiter.try_acquire()).lease_id, Outcome.FAILURE)
    acquired(limiter.try_acquire())
    limiter.cooldown(1)
    r = limiter.redis
    assert 0 < r.pttl(limiter.bucket_key) <= 1200  # full again after 0.2 s, plus a margin
    assert 4000 < r.pttl(limiter.leases_key) <= 6000
    assert 0 < r.pttl(limiter.cooldown_key) <= 1000
    assert r.pttl(limiter.breaker_key) > 0


def test_limits_for_builds_from_settings():
    settings = dataclasses.replace(
        Settings(),
        AWS_REQUESTS_PER_SECOND=7.0,
        AWS_CONCURRENT_REQUESTS=3,
        GEMINI_REQUESTS_PER_MINUTE=30.0,
        GEMINI_CONCURRENT_REQUESTS=2,
    )
    aws = limits_for("rekognition", settings)
    assert (aws.name, aws.rate, aws.burst, aws.concurrency) == ("rekognition", 7.0, 7, 3)
    gemini = limits_for("gemini", settings)
    assert (gemini.name, gemini.rate, gemini.burst, gemini.concurrency) == ("gemini", 0.5, 1, 2)
    assert (gemini.lease_seconds, gemini.breaker_failures, gemini.breaker_seconds) == (60.0, 5, 30.0)
    with pytest.raises(ValueError):
        limits_for("openai", settings)
