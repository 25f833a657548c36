"""Pure decisions about Gemini's answers: which errors mean "slow down", how long Google asked us to wait,
and what a token count costs. No I/O here, so each rule is tested on plain values."""

from __future__ import annotations

import random
import re
from enum import StrEnum
from typing import Any

# The wait rule is the limiter's (every provider call loop uses it); named here too, where the rules live.
from snapmatch.limiter import WaitDecision as WaitDecision
from snapmatch.limiter import decide_wait as decide_wait

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
# google.protobuf.Duration in JSON: decimal seconds with an "s" suffix ("3s", "1.5s", "0.250s").
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# Backoff for a 429 that came without RetryInfo: base * 2**n seconds, equal jitter, capped.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


class ErrorKind(StrEnum):
    THROTTLED = "throttled"  # 429 RESOURCE_EXHAUSTED: wait (shared cooldown), not the provider's fault
    TRANSIENT = "transient"  # 5xx, timeouts: retry a little, and the breaker hears of it
    REJECTED = "rejected"  # 4xx: this request will never work (bad image, bad key, unknown model)


def classify_error(code: int | None, status: str | None) -> ErrorKind:
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ErrorKind.THROTTLED
    if code is None or code >= 500 or code == 408 or status in ("UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"):
        return ErrorKind.TRANSIENT
    return ErrorKind.REJECTED


def parse_duration(text: Any) -> float | None:
    """Seconds of a protobuf Duration string ("3s" -> 3.0); None when it is not one."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    return float(match.group(1)) if match else None


def retry_delay_seconds(details: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` from an error body (the SDK's ``APIError.details``), or None.

    The SDK keeps the whole JSON body in ``details``: ``{"error": {"details": [{"@type": ..., "retryDelay": "3s"}]}}``;
    a bare ``{"details": [...]}`` or the list itself are accepted too.
    """
    if isinstance(details, dict):
        inner = details.get("error", details)
        items = inner.get("details") if isinstance(inner, dict) else None
    else:
        items = details
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("@type") == RETRY_INFO_TYPE:
            seconds = parse_duration(item.get("retryDelay"))
            if seconds is not None:
                return seconds
    return None


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Equal-jitter exponential backoff for a throttle without a retry delay (never zero: it becomes a cooldown)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def spread_delay(delay: float, waiting: int, rate_per_second: float, rng: random.Random | None = None) -> float:
    """When to run a rescheduled job: after ``delay``, plus a random share of the time the ``waiting`` jobs
    already rescheduled need at the provider's rate. Without the spread they all wake together when a
    cooldown ends, one gets the token and the rest are rescheduled again, round after round."""
    spread = max(0, waiting) / rate_per_second if rate_per_second > 0 else 0.0
    return delay + (rng or random).uniform(0, spread)


def token_operations(batch: bool) -> tuple[str, str]:
    """The cost ledger's operation names for input and output tokens (batch requests are priced apart)."""
    return ("batch_input_tokens", "batch_output_tokens") if batch else ("input_tokens", "output_tokens")


def token_prices(per_million_input: float, per_million_output: float) -> dict[str, float]:
    """USD per token by ledger operation; the Batch API bills half the interactive price."""
    return {
        "input_tokens": per_million_input / 1e6,
        "output_tokens": per_million_output / 1e6,
        "batch_input_tokens": per_million_input / 2e6,
        "batch_output_tokens": per_million_output / 2e6,
    }
