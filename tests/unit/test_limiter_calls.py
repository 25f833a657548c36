"""The one call loop every paid provider uses (``limiter.call_through``), against fakeredis with real sleeps.

The attempts are scripted: each raises what a provider SDK would (a throttle, an outage, a refusal) or answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest

from snapmatch.errors import QuotaExceeded, RetryLater
from snapmatch.limiter import (
    CallPolicy,
    Classified,
    DenyReason,
    ProviderLimiter,
    ProviderLimits,
    ProviderWaits,
    RateLimitExceeded,
    Verdict,
    call_through,
)


class Throttle(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("429")
        self.retry_after = retry_after


class Outage(Exception):
    pass


class Refused(Exception):
    pass


class GaveUp(Exception):
    """What a provider raises when its retries are spent."""


def classify(exc: Exception) -> Classified | None:
    if isinstance(exc, Throttle):
        return Classified(Verdict.THROTTLED, exc.retry_after, detail="429")
    if isinstance(exc, Outage):
        return Classified(Verdict.TRANSIENT, error=GaveUp("still failing"))
    if isinstance(exc, Refused):
        return Classified(Verdict.PERMANENT)  # the provider's own exception reaches the caller
    return None


class Surfaced(Exception):
    def __init__(self, kind: str, reason: str = "", delay: float = 0.0) -> None:
        super().__init__(f"{kind} {reason} {delay:.3f}")
        self.kind, self.reason, self.delay = kind, reason, delay


@dataclass
class RecordingWaits:
    """A provider's way of surfacing waits that only writes down what it was told."""

    inline: list[tuple[str, float]] = field(default_factory=list)

    def waited(self, reason: str, seconds: float) -> None:
        self.inline.append((reason, seconds))

    def budget_spent(self) -> BaseException:
        return Surfaced("budget_spent")

    def reschedule(self, reason: str, delay: float) -> BaseException:
        return Surfaced("reschedule", reason, delay)

    def give_up(self, reason: str, delay: float) -> BaseException:
        return Surfaced("give_up", reason, delay)


class Script:
    """One provider attempt per call: raises or returns the next scripted outcome; the last one repeats."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.times: list[float] = []

    def __call__(self) -> Any:
        self.times.append(time.monotonic())
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @property
    def attempts(self) -> int:
        return len(self.times)


@pytest.fixture
def limiter() -> ProviderLimiter:
    # Failures never open the breaker here unless a test asks: the loop, not the breaker, is under test.
    limits = ProviderLimits(name="testprov", rate=1000.0, burst=100, concurrency=4, breaker_failures=1000)
    return ProviderLimiter(fakeredis.FakeRedis(server=fakeredis.FakeServer()), limits, prefix="t")


def policy(**overrides: Any) -> CallPolicy:
    values: dict[str, Any] = {
        "max_inline_wait": 1.0,
        "wait_for": frozenset(DenyReason),
        "transient_retries": 2,
        "throttle_backoff": lambda n: 0.05 * 2**n,
        "failure_backoff": lambda n: 0.01,
    }
    values.update(overrides)
    return CallPolicy(**values)


def call(
    limiter: ProviderLimiter, attempt: Callable[[], Any], waits: RecordingWaits, *, deadline_in: float = 10.0, **kw: Any
) -> Any:
    hooks = {k: kw.pop(k) for k in ("before_attempt", "on_throttle", "on_success") if k in kw}
    return call_through(
        limiter, attempt, classify, deadline=time.time() + deadline_in, policy=policy(**kw), waits=waits, **hooks
    )


def test_an_answer_on_the_first_try_is_returned_and_its_slot_freed(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, waits, answered = Script("faces"), RecordingWaits(), []
    assert call(limiter, attempt, waits, on_success=answered.append) == "faces"
    assert attempt.attempts == 1 and answered == ["faces"] and waits.inline == []
    state = limiter.state()
    assert state["in_flight"] == 0 and state["cooldown_until"] is None and state["consecutive_failures"] == 0


def test_a_throttle_sets_the_shared_cooldown_and_the_retry_waits_it_out(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, waits, cooldowns = Script(Throttle(retry_after=0.3), "faces"), RecordingWaits(), []
    other_process = ProviderLimiter(limiter.redis, limiter.limits, prefix="t")
    seen: list[dict[str, Any]] = []

    def on_throttle(delay: float) -> None:
        cooldowns.append(delay)
        seen.append(other_process.state())

    assert call(limiter, attempt, waits, on_throttle=on_throttle) == "faces"
    assert attempt.attempts == 2 and cooldowns == [0.3]
    # Reported as throttled: every process is held back, the breaker learned nothing.
    assert seen[0]["cooldown_until"] is not None and seen[0]["in_flight"] == 0
    assert seen[0]["consecutive_failures"] == 0
    assert attempt.times[1] - attempt.times[0] >= 0.29, "the retry came before the cooldown ended"
    assert waits.inline and {reason for reason, _ in waits.inline} == {"cooldown"}
    assert limiter.state()["in_flight"] == 0


def test_a_throttle_without_a_delay_backs_off_more_each_time(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, cooldowns = Script(Throttle(), Throttle(retry_after=0.0), "ok"), []
    assert call(limiter, attempt, RecordingWaits(), on_throttle=cooldowns.append) == "ok"
    assert cooldowns == [0.05, 0.1]  # throttle_backoff(0), throttle_backoff(1): a zero delay is no delay


def test_outages_are_retried_after_a_backoff_then_the_providers_error_is_raised(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, waits = Script(Outage("503")), RecordingWaits()
    with pytest.raises(GaveUp) as raised:
        call(limiter, attempt, waits, transient_retries=2)
    assert attempt.attempts == 3
    assert isinstance(raised.value.__cause__, Outage)
    assert waits.inline == [("failure", 0.01), ("failure", 0.01)]
    state = limiter.state()
    assert state["consecutive_failures"] == 3 and state["in_flight"] == 0


def test_transient_failures_are_retried_until_the_deadline(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, waits = Script(Outage("timeout")), RecordingWaits()
    started = time.monotonic()
    with pytest.raises(Surfaced) as raised:
        call(limiter, attempt, waits, deadline_in=0.5, transient_retries=1000, failure_backoff=lambda n: 0.1)
    assert raised.value.kind == "give_up" and raised.value.reason == "failure"
    assert isinstance(raised.value.__context__, Outage)
    assert 3 <= attempt.attempts <= 5  # one every 0.1 s until the next pause would end past the deadline
    assert time.monotonic() - started < 0.6
    assert limiter.state()["consecutive_failures"] == attempt.attempts


def test_a_backoff_longer_than_the_inline_bound_reschedules(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, waits = Script(Outage("503")), RecordingWaits()
    with pytest.raises(Surfaced) as raised:
        call(limiter, attempt, waits, failure_backoff=lambda n: 3.0)
    assert (raised.value.kind, raised.value.reason, raised.value.delay) == ("reschedule", "failure", 3.0)
    assert attempt.attempts == 1 and waits.inline == []


def test_a_refusal_fails_at_once_after_one_attempt_and_spares_the_breaker(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt, refusal = Script(Refused("400 bad image")), None
    with pytest.raises(Refused) as raised:
        call(limiter, attempt, RecordingWaits())
    refusal = raised.value
    assert attempt.attempts == 1 and str(refusal) == "400 bad image"
    state = limiter.state()
    assert state["consecutive_failures"] == 0 and state["cooldown_until"] is None and state["in_flight"] == 0


def test_a_refusal_can_reach_the_caller_as_the_providers_own_error(limiter) -> None:  # type: ignore[no-untyped-def]
    def classify_rejected(exc: Exception) -> Classified | None:
        return Classified(Verdict.PERMANENT, error=GaveUp("rejected")) if isinstance(exc, Refused) else None

    attempt = Script(Refused("400"))
    with pytest.raises(GaveUp) as raised:
        call_through(
            limiter, attempt, classify_rejected, deadline=time.time() + 5, policy=policy(), waits=RecordingWaits()
        )
    assert attempt.attempts == 1 and isinstance(raised.value.__cause__, Refused)


def test_an_interrupted_attempt_frees_its_slot_and_teaches_nothing(limiter) -> None:  # type: ignore[no-untyped-def]
    for interruption in (KeyboardInterrupt(), ValueError("our bug")):
        attempt = Script(interruption)
        with pytest.raises(type(interruption)):
            call(limiter, attempt, RecordingWaits())
        assert attempt.attempts == 1
    state = limiter.state()
    assert state["in_flight"] == 0 and state["consecutive_failures"] == 0 and state["breaker"] == "closed"


def test_the_budget_is_checked_before_every_attempt(limiter) -> None:  # type: ignore[no-untyped-def]
    checks: list[int] = []
    attempt = Script(Throttle(retry_after=0.01), "ok")
    assert call(limiter, attempt, RecordingWaits(), before_attempt=lambda: checks.append(1)) == "ok"
    assert len(checks) == attempt.attempts == 2


# -- long waits, surfaced the provider's way ----------------------------------------------------------------


def test_a_spent_time_budget_ends_before_any_attempt(limiter) -> None:  # type: ignore[no-untyped-def]
    attempt = Script("ok")
    with pytest.raises(Surfaced) as raised:
        call(limiter, attempt, RecordingWaits(), deadline_in=-1.0)
    assert raised.value.kind == "budget_spent" and attempt.attempts == 0


def test_a_cooldown_longer_than_the_inline_bound_reschedules_without_an_attempt(limiter) -> None:  # type: ignore[no-untyped-def]
    limiter.cooldown(3.0)
    attempt, waits = Script("ok"), RecordingWaits()
    started = time.monotonic()
    with pytest.raises(Surfaced) as raised:
        call(limiter, attempt, waits, max_inline_wait=1.0)
    assert raised.value.kind == "reschedule" and raised.value.reason == "cooldown"
    assert 2.9 < raised.value.delay <= 3.0
    assert attempt.attempts == 0 and waits.inline == [] and time.monotonic() - started < 0.2


def test_a_wait_past_the_deadline_gives_up(limiter) -> None:  # type: ignore[no-untyped-def]
    limiter.cooldown(3.0)
    with pytest.raises(Surfaced) as raised:
        call(limiter, Script("ok"), RecordingWaits(), deadline_in=2.0)
    assert raised.value.kind == "give_up" and raised.value.reason == "cooldown"


def test_only_the_chosen_denials_are_waited_out_inline(limiter) -> None:  # type: ignore[no-untyped-def]
    limiter.cooldown(0.2)
    never_through_a_cooldown = frozenset({DenyReason.RATE, DenyReason.CONCURRENCY})
    with pytest.raises(Surfaced) as raised:
        call(limiter, Script("ok"), RecordingWaits(), wait_for=never_through_a_cooldown)
    assert raised.value.kind == "reschedule" and raised.value.reason == "cooldown"
    waits = RecordingWaits()
    assert call(limiter, Script("ok"), waits) == "ok"  # every reason may be waited for
    assert [reason for reason, _ in waits.inline] and {reason for reason, _ in waits.inline} == {"cooldown"}


def test_a_busy_slot_is_polled_inline_then_rescheduled_within_the_bound(limiter) -> None:  # type: ignore[no-untyped-def]
    held = [limiter.acquire(timeout=0) for _ in range(limiter.limits.concurrency)]
    waits = RecordingWaits()
    started = time.monotonic()
    with pytest.raises(Surfaced) as raised:
        call(limiter, Script("ok"), waits, max_inline_wait=0.2)
    assert raised.value.kind == "reschedule" and raised.value.reason == "concurrency"
    assert raised.value.delay == 0.2  # the oldest lease's expiry is only an upper bound
    assert 0.19 <= time.monotonic() - started < 0.4
    assert {reason for reason, _ in waits.inline} == {"concurrency"}
    assert 0.15 <= sum(seconds for _, seconds in waits.inline) <= 0.21
    for lease in held:
        lease.release()


@pytest.mark.parametrize(
    ("deadline_in", "expected"),
    [(60.0, RetryLater), (4.0, QuotaExceeded)],
    ids=["reschedules", "gives-up-at-the-deadline"],
)
def test_rekognition_surfaces_a_long_wait_as_retry_later_or_quota_exceeded(limiter, deadline_in, expected) -> None:  # type: ignore[no-untyped-def]
    limiter.cooldown(8.0)
    attempt = Script("ok")
    with pytest.raises(expected) as raised:
        call_through(
            limiter,
            attempt,
            classify,
            deadline=time.time() + deadline_in,
            policy=policy(max_inline_wait=5.0),
            waits=ProviderWaits("rekognition", "IndexFaces", 600),
        )
    assert attempt.attempts == 0 and isinstance(raised.value.__cause__, RateLimitExceeded)
    if expected is RetryLater:
        assert raised.value.reason == "cooldown" and 7.9 < raised.value.delay <= 8.0
    else:
        assert "no slot before the photo's time budget ends (cooldown" in str(raised.value)


def test_gemini_writes_its_inline_waits_in_the_jobs_wait_log(limiter) -> None:  # type: ignore[no-untyped-def]
    from snapmatch.analysis.gemini import GeminiUnavailable, WaitLog, _GeminiWaits

    log = WaitLog()
    attempt = Script(Outage("503"), "described")
    gemini_way = policy(wait_for=frozenset({DenyReason.RATE, DenyReason.CONCURRENCY}), failure_backoff=lambda n: 0.05)
    waits = _GeminiWaits("gemini", "generateContent", 600, log)
    assert call_through(limiter, attempt, classify, deadline=time.time() + 60, policy=gemini_way, waits=waits) == (
        "described"
    )
    assert log.inline_seconds == {"failure": 0.05}
    limiter.cooldown(0.5)  # short, but never slept through: the job is rescheduled
    with pytest.raises(RetryLater) as raised:
        call_through(limiter, Script("ok"), classify, deadline=time.time() + 60, policy=gemini_way, waits=waits)
    assert raised.value.reason == "cooldown" and log.inline_seconds == {"failure": 0.05}
    with pytest.raises(GeminiUnavailable):  # failing until the budget ends is Gemini's fault, not the quota's
        call_through(
            limiter,
            Script(Outage("503")),
            classify,
            deadline=time.time() + 0.6,
            policy=policy(failure_backoff=lambda n: 0.5, transient_retries=1000),
            waits=waits,
        )
