"""One provider limiter (token bucket, expiring leases, shared cooldown, circuit breaker) kept in Redis, and the
one loop (``call_through``) that puts every attempt of a paid provider's call through it.

Every web and worker process on every machine asks the same Redis keys, so a provider sees one client.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from redis import Redis

from snapmatch import metrics
from snapmatch.errors import QuotaExceeded, RetryLater
from snapmatch.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outcome(StrEnum):
    """How a provider call ended; decides what the circuit breaker learns from it."""

    SUCCESS = "success"
    # The provider failed (5xx, timeout, connection error): counts toward opening the breaker.
    FAILURE = "failure"
    # The provider said "slow down" (429 / ThrottlingException): the caller sets a cooldown instead.
    THROTTLED = "throttled"
    # The call was abandoned before the provider answered (worker shutdown): frees the slot, teaches nothing.
    CANCELLED = "cancelled"


class DenyReason(StrEnum):
    COOLDOWN = "cooldown"
    BREAKER_OPEN = "breaker_open"
    CONCURRENCY = "concurrency"
    RATE = "rate"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# A consecutive-failure count (or a half-open breaker) nobody touched for this long is forgotten, so an
# idle provider leaves no keys behind.
_BREAKER_IDLE_SECONDS = 3600
# While waiting for a slot that a release elsewhere could free at any moment, look again this often.
_POLL_SECONDS = 0.025
# Spread waiters that computed the same retry_after so they do not all hit Redis in the same instant.
_JITTER_SECONDS = 0.0005
# How much earlier than a known wait ends a waiter looks again (more than _JITTER_SECONDS, see acquire).
_EARLY_WAKE_SECONDS = 0.001


@dataclass(frozen=True)
class ProviderLimits:
    """What one provider allows, shared by every process that calls it."""

    name: str
    rate: float  # tokens per second
    burst: int  # bucket capacity
    concurrency: int  # calls in flight at once
    lease_seconds: float = 60.0  # a crashed holder's slot comes back after this long
    breaker_failures: int = 5  # consecutive failures that open the breaker
    breaker_seconds: float = 30.0  # how long it stays open before one probe is let through

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"invalid provider name {self.name!r}")
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1:
            raise ValueError(f"{self.name}: rate must be > 0, burst and concurrency >= 1")
        if self.lease_seconds <= 0 or self.breaker_seconds <= 0 or self.breaker_failures < 1:
            raise ValueError(f"{self.name}: lease and breaker settings must be positive")


def limits_for(provider: str, settings: Settings | None = None) -> ProviderLimits:
    """Build a provider's limits ("rekognition" or "gemini") from the settings (default: the process's)."""
    settings = settings or get_settings()
    if provider == "rekognition":
        rate = float(settings.AWS_REQUESTS_PER_SECOND)
        concurrency = int(settings.AWS_CONCURRENT_REQUESTS)
        burst = settings.AWS_BURST
    elif provider == "gemini":
        rate = float(settings.GEMINI_REQUESTS_PER_MINUTE) / 60.0
        concurrency = int(settings.GEMINI_CONCURRENT_REQUESTS)
        burst = settings.GEMINI_BURST
    else:
        raise ValueError(f"unknown provider {provider!r}")
    return ProviderLimits(
        name=provider,
        rate=rate,
        burst=burst or max(1, round(rate)),
        concurrency=concurrency,
        lease_seconds=settings.LIMITER_LEASE_SECONDS,
        breaker_failures=settings.LIMITER_BREAKER_FAILURES,
        breaker_seconds=settings.LIMITER_BREAKER_SECONDS,
    )


@dataclass(frozen=True)
class Acquired:
    lease_id: str
    acquired_at: float  # Redis TIME, unix seconds
    expires_at: float  # Redis TIME, unix seconds; renew() pushes it back
    probe: bool = False  # the one call a half-open breaker lets through


@dataclass(frozen=True)
class Denied:
    reason: DenyReason
    retry_after: float  # seconds
    # True when retry_after is only an upper bound: a release elsewhere may free the slot sooner. Otherwise
    # no attempt can succeed before retry_after has passed.
    can_free_sooner: bool = False

    def __bool__(self) -> bool:
        return False


class RateLimitExceeded(Exception):
    """No slot within the caller's wait budget; the job should be rescheduled after ``retry_after``."""

    code = "rate_limited"

    def __init__(self, provider: str, reason: DenyReason | str, retry_after: float) -> None:
        self.provider = provider
        self.reason = DenyReason(reason)
        self.retry_after = retry_after
        super().__init__(f"{provider}: {self.reason} (retry after {retry_after:.3f} s)")


# All scripts read the clock with TIME: the callers' clocks may disagree, Redis's is the one they share.
# Numbers go through num() because Redis would otherwise truncate a Lua number it returns to an integer.
_LUA_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function num(x) return string.format('%.17g', x) end
"""

_ACQUIRE_LUA = (
    _LUA_PRELUDE
    + """
local bucket_key, leases_key, cooldown_key, breaker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local concurrency, lease_seconds = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, lease_id, idle = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])

-- Every check below only reads; the writes at the end happen only when all of them pass, so a denial
-- leaves Redis exactly as it was.
local function deny(reason, wait, sooner) return {0, reason, num(math.max(wait, 0)), sooner} end

local cooldown_until = tonumber(redis.call('GET', cooldown_key) or '0')
if cooldown_until > now then return deny('cooldown', cooldown_until - now, 0) end

local breaker = redis.call('HMGET', breaker_key, 'open_until', 'probe')
local open_until = tonumber(breaker[1] or '0')
local probe = false
if open_until > 0 then
  if now < open_until then return deny('breaker_open', open_until - now, 0) end
  -- Half-open: one probe at a time. A probe whose lease expired (crashed holder) no longer blocks.
  if breaker[2] then
    local probe_expiry = tonumber(redis.call('ZSCORE', leases_key, breaker[2]) or '0')
    if probe_expiry > now then return deny('breaker_open', probe_expiry - now, 1) end
  end
  probe = true
end

-- Leases past their expiry are dead (their holder crashed or hung); count only the live ones.
local live_min = '(' .. num(now)
if redis.call('ZCOUNT', leases_key, live_min, '+inf') >= concurrency then
  local oldest = redis.call('ZRANGEBYSCORE', leases_key, live_min, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return deny('concurrency', tonumber(oldest[2]) - now, 1)
end

local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ts')
local tokens = tonumber(bucket[1] or burst)
local ts = tonumber(bucket[2] or now)
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens < cost then return deny('rate', (cost - tokens) / rate, 0) end

tokens = tokens - cost
redis.call('HSET', bucket_key, 'tokens', num(tokens), 'ts', num(now))
-- Once refilled to the brim the bucket is the same as no bucket, so let it go then.
redis.call('PEXPIRE', bucket_key, math.ceil((burst - tokens) / rate * 1000) + 1000)

redis.call('ZREMRANGEBYSCORE', leases_key, '-inf', num(now))
local expires = now + lease_seconds
redis.call('ZADD', leases_key, num(expires), lease_id)
local last = redis.call('ZRANGE', leases_key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', leases_key, math.ceil((tonumber(last[2]) - now) * 1000) + 1000)

if probe then
  redis.call('HSET', breaker_key, 'probe', lease_id)
  redis.call('PEXPIRE', breaker_key, math.ceil((lease_seconds + idle) * 1000))
end
return {1, lease_id, num(now), num(expires), probe and 1 or 0}
"""
)

_RELEASE_LUA = (
    _LUA_PRELUDE
    + """
local leases_key, breaker_key = KEYS[1], KEYS[2]
local lease_id, outcome = ARGV[1], ARGV[2]
local max_failures, breaker_seconds, idle = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

local held = redis.call('ZREM', leases_key, lease_id)

local b = redis.call('HMGET', breaker_key, 'failures', 'open_until', 'probe')
local failures, open_until = tonumber(b[1] or '0'), tonumber(b[2] or '0')

local function open()
  redis.call('HSET', breaker_key, 'failures', failures + 1, 'open_until', num(now + breaker_seconds))
  redis.call('HDEL', breaker_key, 'probe')
  redis.call('PEXPIRE', breaker_key, math.ceil((breaker_seconds + idle) * 1000))
end

if open_until > 0 then
  -- Open or half-open: only the probe's answer moves the breaker; calls that started before it opened
  -- say nothing about the provider now.
  if b[3] == lease_id then
    if outcome == 'success' then
      redis.call('DEL', breaker_key)
    elseif outcome == 'failure' then
      open()
    else
      -- Throttled or cancelled probe: the provider did not really answer, let another probe try.
      redis.call('HDEL', breaker_key, 'probe')
    end
  end
elseif outcome == 'success' then
  if failures > 0 then redis.call('DEL', breaker_key) end
elseif outcome == 'failure' then
  if failures + 1 >= max_failures then
    open()
  else
    redis.call('HSET', breaker_key, 'failures', failures + 1)
    redis.call('PEXPIRE', breaker_key, idle * 1000)
  end
end
return held
"""
)

_COOLDOWN_LUA = (
    _LUA_PRELUDE
    + """
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
-- Only ever extend: a shorter retry delay seen by one process must not cut another's longer one.
if wanted > current then
  redis.call('SET', KEYS[1], num(wanted), 'PX', math.ceil((wanted - now) * 1000))
  return num(wanted)
end
return num(current)
"""
)

_RENEW_LUA = (
    _LUA_PRELUDE
    + """
local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
-- A lease past its expiry is lost: its slot may already belong to someone else.
if score <= now then return false end
local expires = math.max(score, now + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], 'XX', num(expires), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) * 1000) + 1000)
return num(expires)
"""
)

_STATE_LUA = (
    _LUA_PRELUDE
    + """
local bucket_key, leases_key, cooldown_key, breaker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local bucket = redis.call('HMGET', bucket_key, 'tokens', 'ts')
local tokens = tonumber(bucket[1] or burst)
tokens = math.min(burst, tokens + math.max(0, now - tonumber(bucket[2] or now)) * rate)
local in_flight = redis.call('ZCOUNT', leases_key, '(' .. num(now), '+inf')
local b = redis.call('HMGET', breaker_key, 'failures', 'open_until')
return {num(now), num(tokens), in_flight, redis.call('GET', cooldown_key) or '0', b[1] or '0', b[2] or '0'}
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Lease:
    """A held slot. Release it exactly once; the ``lease()`` context manager does that for you."""

    def __init__(self, limiter: ProviderLimiter, acquired: Acquired) -> None:
        self.limiter = limiter
        self.lease_id = acquired.lease_id
        self.acquired_at = acquired.acquired_at
        self.expires_at = acquired.expires_at
        self.probe = acquired.probe
        self.outcome: Outcome | None = None
        self.released = False

    def mark(self, outcome: Outcome | str) -> None:
        """Decide the outcome the context manager reports, overriding success/failure by exception."""
        self.outcome = Outcome(outcome)

    def throttled(self, retry_after: float | None) -> None:
        """The provider said 429: every process waits ``retry_after`` seconds, and the breaker is spared."""
        self.mark(Outcome.THROTTLED)
        if retry_after is not None and retry_after > 0:
            self.limiter.cooldown(retry_after)

    def renew(self, seconds: float | None = None) -> bool:
        expires_at = self.limiter.renew(self.lease_id, seconds)
        if expires_at is None:
            return False
        self.expires_at = expires_at
        return True

    def release(self, outcome: Outcome | str | None = None) -> bool:
        # Guarded here because the script counts every outcome it is told (a call that outlived its lease
        # still failed), so a double release would count twice.
        if self.released:
            return False
        self.released = True
        return self.limiter.release(self.lease_id, outcome or self.outcome or Outcome.SUCCESS)


class ProviderLimiter:
    """The limiter for one provider, backed by four Redis keys under ``{prefix}:limiter:{name}:``."""

    def __init__(self, redis: Redis, limits: ProviderLimits, prefix: str = "snapmatch") -> None:
        self.redis = redis
        self.limits = limits
        base = f"{prefix}:limiter:{limits.name}"
        self.bucket_key = f"{base}:bucket"
        self.leases_key = f"{base}:leases"
        self.cooldown_key = f"{base}:cooldown"
        self.breaker_key = f"{base}:breaker"
        self._keys = [self.bucket_key, self.leases_key, self.cooldown_key, self.breaker_key]
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._cooldown = redis.register_script(_COOLDOWN_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._state = redis.register_script(_STATE_LUA)

    def try_acquire(self, cost: int = 1) -> Acquired | Denied:
        """One atomic attempt: a lease and ``cost`` tokens, or the reason and how long to wait."""
        limits = self.limits
        if not 1 <= cost <= limits.burst:
            # More than the bucket can ever hold would be denied forever.
            raise ValueError(f"{limits.name}: cost must be between 1 and burst={limits.burst}, got {cost}")
        reply = self._acquire(
            keys=self._keys,
            args=[
                limits.rate,
                limits.burst,
                limits.concurrency,
                limits.lease_seconds,
                cost,
                uuid.uuid4().hex,
                _BREAKER_IDLE_SECONDS,
            ],
        )
        if reply[0] == 1:
            return Acquired(_text(reply[1]), float(reply[2]), float(reply[3]), probe=reply[4] == 1)
        return Denied(DenyReason(_text(reply[1])), float(reply[2]), can_free_sooner=reply[3] == 1)

    def acquire(
        self,
        timeout: float,
        cost: int = 1,
        *,
        wait_for: Collection[DenyReason] | None = None,
        on_wait: Callable[[str, float], None] | None = None,
        record_waits: bool = True,
    ) -> Lease:
        """Wait up to ``timeout`` seconds for a lease; raise ``RateLimitExceeded`` rather than wait longer.

        Gives up at once when the known wait (rate, cooldown, open breaker) is longer than what is left,
        so a worker can reschedule its job instead of sleeping through a wait it cannot win. ``wait_for``
        (default: every reason) are the denials worth waiting out: any other one, seen at any look, gives up
        at once. ``on_wait(reason, seconds)`` hears of every sleep; ``record_waits`` counts the wait in the
        limiter metrics.
        """
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        waited_for: str | None = None
        while True:
            result = self.try_acquire(cost)
            if isinstance(result, Acquired):
                if waited_for is not None and record_waits:
                    metrics.LIMITER_WAITS.labels(self.limits.name, waited_for).inc()
                    metrics.LIMITER_WAIT_SECONDS.labels(self.limits.name).observe(time.monotonic() - started)
                return Lease(self, result)
            waited_for = waited_for or str(result.reason)
            remaining = deadline - time.monotonic()
            if (
                remaining <= 0
                or (wait_for is not None and result.reason not in wait_for)
                or (not result.can_free_sooner and result.retry_after > remaining)
            ):
                raise RateLimitExceeded(self.limits.name, result.reason, result.retry_after)
            if result.can_free_sooner:
                wait = min(result.retry_after, _POLL_SECONDS) + random.uniform(0, _JITTER_SECONDS)
            elif result.retry_after > 2 * _EARLY_WAKE_SECONDS:
                # Wake a little early (spread by the jitter) and let the next denial give the exact rest:
                # the first call after a long sleep is slow, and every late millisecond is refill lost
                # while the bucket sits full.
                wait = result.retry_after - _EARLY_WAKE_SECONDS + random.uniform(0, _JITTER_SECONDS)
            else:
                wait = result.retry_after
            slept = min(wait, remaining)
            time.sleep(slept)
            if on_wait is not None:
                on_wait(str(result.reason), slept)

    def release(self, lease_id: str, outcome: Outcome | str) -> bool:
        """Free the slot and tell the breaker how the call went. False if the lease had already expired."""
        limits = self.limits
        held = self._release(
            keys=[self.leases_key, self.breaker_key],
            args=[
                lease_id,
                Outcome(outcome).value,
                limits.breaker_failures,
                limits.breaker_seconds,
                _BREAKER_IDLE_SECONDS,
            ],
        )
        return held == 1

    @contextmanager
    def lease(self, timeout: float, cost: int = 1) -> Iterator[Lease]:
        """``with limiter.lease(timeout=5) as held:`` success on normal exit, failure on an exception."""
        held = self.acquire(timeout, cost)
        try:
            yield held
        except Exception:
            held.release(held.outcome or Outcome.FAILURE)
            raise
        except BaseException:
            # Shutdown or interrupt: the provider did nothing wrong.
            held.release(held.outcome or Outcome.CANCELLED)
            raise
        held.release(held.outcome or Outcome.SUCCESS)

    def cooldown(self, seconds: float) -> float | None:
        """Deny every process until Redis TIME + ``seconds``; only ever extends. Returns the end (unix s)."""
        if seconds <= 0:
            return self.state()["cooldown_until"]
        return float(self._cooldown(keys=[self.cooldown_key], args=[seconds]))

    def renew(self, lease_id: str, seconds: float | None = None) -> float | None:
        """Push a live lease's expiry to now + ``seconds`` (default lease_seconds); None if it was lost."""
        reply = self._renew(keys=[self.leases_key], args=[lease_id, seconds or self.limits.lease_seconds])
        return float(reply) if reply is not None else None

    def state(self) -> dict[str, Any]:
        """A consistent snapshot for the admin API; changes nothing (tokens are refilled only in the view)."""
        now, tokens, in_flight, cooldown_until, failures, open_until = self._state(
            keys=self._keys, args=[self.limits.rate, self.limits.burst]
        )
        now, cooldown_until, open_until = float(now), float(cooldown_until), float(open_until)
        if open_until <= 0:
            breaker = BreakerState.CLOSED
        elif now < open_until:
            breaker = BreakerState.OPEN
        else:
            breaker = BreakerState.HALF_OPEN
        return {
            "provider": self.limits.name,
            "tokens": float(tokens),
            "in_flight": int(in_flight),
            "cooldown_until": cooldown_until if cooldown_until > now else None,
            "breaker": breaker.value,
            "breaker_open_until": open_until if breaker is BreakerState.OPEN else None,
            "consecutive_failures": int(failures),
            "limits": asdict(self.limits),
        }


# -- one provider call, every attempt through the limiter ------------------------------------------------------


class WaitDecision(StrEnum):
    INLINE = "inline"  # short enough to wait in the worker
    RESCHEDULE = "reschedule"  # free the worker, run again later as a new job
    GIVE_UP = "give_up"  # the photo's time budget would be spent: quota_exceeded


def decide_wait(now: float, delay: float, deadline: float, max_inline_seconds: float) -> WaitDecision:
    """What to do about a wait of ``delay`` seconds for a photo whose budget ends at ``deadline`` (unix s)."""
    if now + delay >= deadline:
        return WaitDecision.GIVE_UP
    if delay > max_inline_seconds:
        return WaitDecision.RESCHEDULE
    return WaitDecision.INLINE


class Verdict(StrEnum):
    """What one failed attempt means for the call (an attempt that never reached the provider has none)."""

    THROTTLED = "throttled"  # "slow down": shared cooldown, the breaker spared, tried again
    TRANSIENT = "transient"  # the provider or the network failed: the breaker hears of it, a few retries
    PERMANENT = "permanent"  # the provider answered and refused this request: raised at once, provider healthy


@dataclass(frozen=True)
class Classified:
    """A provider's reading of one attempt's exception."""

    verdict: Verdict
    retry_after: float | None = None  # THROTTLED: the delay the provider asked for, if it said one
    # What the caller gets when the call ends on this exception (PERMANENT, or TRANSIENT past its retries);
    # None: the provider's own exception, as it is.
    error: BaseException | None = None
    detail: object = ""  # for the debug log: the error code or status


@dataclass(frozen=True)
class ProviderWaits:
    """How one call surfaces its waits; the loop decides, this names the exception. By default a long wait
    reschedules the job (``RetryLater``) and one past the deadline ends in ``QuotaExceeded``; a provider that
    wants otherwise (or keeps a record of inline waits) overrides the method."""

    provider: str
    operation: str
    budget: float  # the photo's time budget, seconds: for the message

    def waited(self, reason: str, seconds: float) -> None:
        """The worker slept ``seconds`` inline, for a denial's reason or "failure" (a backoff)."""

    def budget_spent(self) -> BaseException:
        """The deadline has passed before an attempt could start."""
        return QuotaExceeded(
            f"{self.provider} {self.operation}: the photo's time budget of {self.budget:.0f} s ran out"
        )

    def reschedule(self, reason: str, delay: float) -> BaseException:
        """The next attempt is ``delay`` seconds away, too long to hold the worker: run the job again later."""
        return RetryLater(delay, reason, self.provider)

    def give_up(self, reason: str, delay: float) -> BaseException:
        """The next attempt would start past the deadline."""
        if reason == "failure":
            return QuotaExceeded(f"{self.provider}: the photo's time budget ran out while the provider was failing")
        return QuotaExceeded(
            f"{self.provider} {self.operation}: no slot before the photo's time budget ends ({reason}, "
            f"next in {delay:.1f} s)"
        )


@dataclass(frozen=True)
class CallPolicy:
    """How a provider wants its calls retried: the deliberate differences between providers, as values."""

    max_inline_wait: float  # seconds a worker may wait for a slot or a backoff before rescheduling
    wait_for: frozenset[DenyReason]  # denials worth waiting out inline; any other one reschedules at once
    transient_retries: int  # failures after the first that are tried again; one more ends the call
    throttle_backoff: Callable[[int], float]  # throttles seen so far (0, 1, ...) -> cooldown without Retry-After
    failure_backoff: Callable[[int], float]  # failures in a row so far (1, 2, ...) -> pause before the retry
    # (now, pause, deadline, max_inline) -> what to do about a backoff after a failure
    decide_pause: Callable[[float, float, float, float], WaitDecision] = decide_wait
    record_waits: bool = True  # count inline waits for a slot in the limiter metrics


def call_through(
    limiter: ProviderLimiter,
    attempt: Callable[[], T],
    classify: Callable[[Exception], Classified | None],
    *,
    deadline: float,
    policy: CallPolicy,
    waits: ProviderWaits,
    before_attempt: Callable[[], None] | None = None,
    on_throttle: Callable[[float], None] | None = None,
    on_success: Callable[[T], None] | None = None,
    name: str = "",
) -> T:
    """Make ``attempt`` (one provider request, SDK retries off) until it answers, each try under its own lease.

    ``classify`` reads an attempt's exception; None means it never reached the provider (a bug on our side,
    a shutdown): the slot is freed without teaching the breaker and the exception goes to the caller as it is.
    A throttle sets the shared cooldown (the provider's delay, else ``throttle_backoff``) and tries again
    through the limiter; a transient failure is reported to the breaker and retried ``transient_retries``
    times after a backoff; a permanent one is raised at once. Waits too long for the worker, or past
    ``deadline`` (unix s), leave through ``waits``. ``before_attempt`` runs before every lease (the budget
    check), ``on_throttle(cooldown)`` after every throttle, ``on_success(result)`` once it answered.
    """
    throttles = 0
    failures = 0
    while True:
        if before_attempt is not None:
            before_attempt()
        lease = _lease(limiter, policy, waits, deadline)
        try:
            result = attempt()
        except BaseException as exc:
            classified = classify(exc) if isinstance(exc, Exception) else None
            if classified is None:
                lease.release(Outcome.CANCELLED)
                raise
            if classified.verdict is Verdict.THROTTLED:
                delay = classified.retry_after
                delay = delay if delay is not None and delay > 0 else policy.throttle_backoff(throttles)
                # The shared cooldown: every process waits, not only this one; the breaker is spared.
                lease.throttled(delay)
                lease.release()
                throttles += 1
                if on_throttle is not None:
                    on_throttle(delay)
                log.debug("%s throttled (%s), cooldown %.3f s", name, classified.detail, delay)
                continue  # the next lease sees the cooldown: waits, reschedules or gives up
            if classified.verdict is Verdict.TRANSIENT:
                lease.release(Outcome.FAILURE)
                failures += 1
                if failures > policy.transient_retries:
                    _raise(classified, exc)
                _pause(policy, waits, policy.failure_backoff(failures), deadline)
                continue
            # The provider answered: it is healthy, the request was not.
            lease.release(Outcome.SUCCESS)
            _raise(classified, exc)
        lease.release(Outcome.SUCCESS)
        if on_success is not None:
            on_success(result)
        return result


def _raise(classified: Classified, exc: BaseException) -> NoReturn:
    if classified.error is None:
        raise exc
    raise classified.error from exc


def _lease(limiter: ProviderLimiter, policy: CallPolicy, waits: ProviderWaits, deadline: float) -> Lease:
    """A lease now or after a short inline wait; otherwise the provider's reschedule or give-up exception."""
    remaining = deadline - time.time()
    if remaining <= 0:
        raise waits.budget_spent()
    try:
        return limiter.acquire(
            timeout=min(policy.max_inline_wait, remaining),
            wait_for=policy.wait_for,
            on_wait=waits.waited,
            record_waits=policy.record_waits,
        )
    except RateLimitExceeded as exc:
        delay = exc.retry_after
        if exc.reason is DenyReason.CONCURRENCY:
            # Only an upper bound (the oldest lease's expiry): a slot usually frees much sooner.
            delay = min(delay, policy.max_inline_wait)
        if time.time() + delay >= deadline:
            raise waits.give_up(str(exc.reason), delay) from exc
        raise waits.reschedule(str(exc.reason), delay) from exc


def _pause(policy: CallPolicy, waits: ProviderWaits, seconds: float, deadline: float) -> None:
    """The backoff after a failure: slept inline, or the job rescheduled, or the call given up."""
    decision = policy.decide_pause(time.time(), seconds, deadline, policy.max_inline_wait)
    if decision is WaitDecision.GIVE_UP:
        raise waits.give_up("failure", seconds)
    if decision is WaitDecision.RESCHEDULE:
        raise waits.reschedule("failure", seconds)
    time.sleep(seconds)
    waits.waited("failure", seconds)
