"""Gemini through the google-genai SDK: one structured description per photo, or many in a Batch API job.

The SDK's own retries are off (one HTTP attempt per call), so every attempt takes a lease from the shared limiter,
and a 429's RetryInfo delay becomes the cooldown every process honours.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from redis import Redis

from snapmatch.analysis import PROVIDER
from snapmatch.analysis.description import PROMPT, Description, PhotoDescriptionSchema, parse_description
from snapmatch.analysis.quota import ErrorKind, backoff_seconds, classify_error, retry_delay_seconds
from snapmatch.costs import CostTracker
from snapmatch.errors import QuotaExceeded, RetryLater, SnapmatchError
from snapmatch.forksafe import PerProcess
from snapmatch.limiter import (
    CallPolicy,
    Classified,
    DenyReason,
    ProviderLimiter,
    ProviderWaits,
    Verdict,
    call_through,
    decide_wait,
    limits_for,
)
from snapmatch.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# The REST version Snapmatch speaks: structured output and the Batch API are documented there.
API_VERSION = "v1beta"
TRANSIENT_RETRIES = 2
GENERATE = "generateContent"
# RQ's scheduler moves due jobs about once a second; a shorter delay still means "as soon as it can".
MIN_RESCHEDULE_SECONDS = 0.05


class GeminiUnavailable(SnapmatchError):
    """Gemini kept failing (5xx, timeouts) or the shared breaker is open: try again later."""

    code = "gemini_unavailable"
    status = 503


class GeminiRejected(SnapmatchError):
    """Gemini refused this request (bad image, bad key, unknown model): retrying will not help."""

    code = "gemini_rejected"
    status = 502


@dataclass
class WaitLog:
    """How long one job waited inside the worker, by reason (rate, concurrency, failure): what the acceptance
    test reads to show that no worker slept through a cooldown."""

    inline_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, reason: str, seconds: float) -> None:
        self.inline_seconds[reason] = self.inline_seconds.get(reason, 0.0) + seconds

    @property
    def total(self) -> float:
        return sum(self.inline_seconds.values())


@dataclass(frozen=True)
class Analysis:
    description: Description
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class BatchResult:
    """One answer of a finished batch job, keyed by the photo id we put in the request's metadata."""

    photo_id: int
    analysis: Analysis | None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class BatchState:
    name: str
    state: str  # JOB_STATE_PENDING / RUNNING / SUCCEEDED / FAILED / CANCELLED / EXPIRED
    results: list[BatchResult]

    @property
    def finished(self) -> bool:
        return self.state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")

    @property
    def succeeded(self) -> bool:
        return self.state == "JOB_STATE_SUCCEEDED"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS trust the SDK would build (httpx2's: the OS trust store), made once per worker: building it is
    most of a client's cost (~0.2 s), and every forked work horse makes its own client. A context holds no
    connection, so sharing it across a fork is safe."""
    return httpx2.create_ssl_context()


def make_client(api_key: str, base_url: str = "", timeout_seconds: float = 60.0) -> genai.Client:
    """A client that tries each request once (the limiter decides about retries) and honours GEMINI_BASE_URL."""
    tls = _tls_context()
    options = types.HttpOptions(
        api_version=API_VERSION,
        base_url=base_url or None,
        timeout=int(timeout_seconds * 1000),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
        client_args={"verify": tls},
        async_client_args={"verify": tls, "ssl": tls},
    )
    return genai.Client(api_key=api_key, http_options=options)


def _usage(response: types.GenerateContentResponse) -> tuple[int, int]:
    usage = response.usage_metadata
    if usage is None:
        return 0, 0
    return int(usage.prompt_token_count or 0), int(usage.candidates_token_count or 0) + int(
        usage.thoughts_token_count or 0
    )


def analysis_from_response(response: types.GenerateContentResponse) -> Analysis:
    tokens_in, tokens_out = _usage(response)
    return Analysis(parse_description(response.text), tokens_in, tokens_out)


class GeminiAnalyzer:
    """Describes photos with Gemini. Build once per worker (``from_settings``); safe across forks and threads."""

    def __init__(
        self,
        *,
        limiter: ProviderLimiter,
        costs: CostTracker,
        api_key: str,
        model: str,
        base_url: str = "",
        request_timeout_seconds: float = 60.0,
        time_budget_seconds: float = 600.0,
        max_inline_wait_seconds: float = 2.0,
        client: genai.Client | None = None,
    ) -> None:
        self.limiter = limiter
        self.costs = costs
        self.model = model
        self.time_budget_seconds = time_budget_seconds
        self.max_inline_wait_seconds = max_inline_wait_seconds
        self._given_client = client
        self._client = PerProcess(lambda: make_client(api_key, base_url, request_timeout_seconds))

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> GeminiAnalyzer:
        from snapmatch.redis_client import get_redis

        redis = redis if redis is not None else get_redis(settings.REDIS_URL)
        return cls(
            limiter=ProviderLimiter(redis, limits_for(PROVIDER, settings), prefix=settings.REDIS_PREFIX),
            costs=CostTracker.from_settings(redis, settings),
            api_key=settings.GEMINI_API_KEY,
            model=settings.GEMINI_MODEL,
            base_url=settings.GEMINI_BASE_URL,
            request_timeout_seconds=settings.GEMINI_REQUEST_TIMEOUT_SECONDS,
            time_budget_seconds=settings.GEMINI_TIMEOUT_SECONDS_TOTAL,
            max_inline_wait_seconds=settings.GEMINI_MAX_INLINE_WAIT_SECONDS,
        )

    def warm(self) -> None:
        """Build what every process shares before the worker forks (the TLS context)."""
        _tls_context()

    @property
    def client(self) -> genai.Client:
        return self._given_client if self._given_client is not None else self._client.get()

    def deadline_from(self, started: float | None) -> float:
        return (started if started is not None else time.time()) + self.time_budget_seconds

    @staticmethod
    def _config() -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=PhotoDescriptionSchema, temperature=0.2
        )

    def _contents(self, image: bytes) -> list[Any]:
        return [types.Part.from_bytes(data=image, mime_type="image/jpeg"), PROMPT]

    # -- the calls ---------------------------------------------------------------------------------------------

    def describe(
        self,
        image: bytes,
        *,
        event_id: int,
        deadline: float,
        on_throttle: Callable[[float], None] | None = None,
        waits: WaitLog | None = None,
    ) -> Analysis:
        """One generateContent for a JPEG. Raises RetryLater, QuotaExceeded, GeminiUnavailable, GeminiRejected,
        UnreadableAnswer (codes say which)."""
        response = self._call(
            GENERATE,
            event_id,
            deadline,
            lambda: self.client.models.generate_content(
                model=self.model, contents=self._contents(image), config=self._config()
            ),
            on_throttle=on_throttle,
            billable=True,
            waits=waits,
        )
        return analysis_from_response(response)

    def submit_batch(self, items: list[tuple[int, bytes]], display_name: str) -> str:
        """Create a Batch API job with one inline request per (photo id, JPEG); returns its name (batches/...)."""
        requests = [
            types.InlinedRequest(
                contents=self._contents(image), config=self._config(), metadata={"photo_id": str(photo_id)}
            )
            for photo_id, image in items
        ]
        job = self._call(
            "batchGenerateContent",
            None,
            self.deadline_from(None),
            lambda: self.client.batches.create(
                model=self.model, src=requests, config=types.CreateBatchJobConfig(display_name=display_name)
            ),
        )
        if not job.name:
            raise GeminiUnavailable("Gemini created a batch job without a name.")
        return job.name

    def batch_state(self, name: str) -> BatchState:
        """The batch job's state and, once it succeeded, one result per request."""
        job = self._call("batches.get", None, self.deadline_from(None), lambda: self.client.batches.get(name=name))
        state = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
        results: list[BatchResult] = []
        for item in (job.dest.inlined_responses or []) if job.dest is not None else []:
            raw_id = (item.metadata or {}).get("photo_id", "")
            if not str(raw_id).isdigit():
                continue
            photo_id = int(raw_id)
            if item.error is not None or item.response is None:
                message = getattr(item.error, "message", None) or "Gemini returned no answer for this photo."
                results.append(BatchResult(photo_id, None, "gemini_batch_item_failed", message))
                continue
            try:
                results.append(BatchResult(photo_id, analysis_from_response(item.response)))
            except SnapmatchError as exc:
                results.append(BatchResult(photo_id, None, exc.code, exc.message))
        return BatchState(name, state, results)

    # -- one call, every attempt through the limiter -----------------------------------------------------------

    def _call(
        self,
        operation: str,
        event_id: int | None,
        deadline: float,
        send: Callable[[], T],
        *,
        on_throttle: Callable[[float], None] | None = None,
        billable: bool = False,
        waits: WaitLog | None = None,
    ) -> T:
        waits = waits if waits is not None else WaitLog()

        def throttled(delay: float) -> None:
            self.costs.record_throttle(PROVIDER, operation)
            if on_throttle is not None:
                on_throttle(delay)

        return call_through(
            self.limiter,
            send,
            _classify,
            deadline=deadline,
            policy=self._policy(),
            waits=_GeminiWaits(PROVIDER, operation, self.time_budget_seconds, waits),
            before_attempt=(
                (lambda: self.costs.check_budget(event_id, PROVIDER)) if billable and event_id is not None else None
            ),
            on_throttle=throttled,
            name=f"{PROVIDER} {operation}",
        )

    def _policy(self) -> CallPolicy:
        return CallPolicy(
            max_inline_wait=self.max_inline_wait_seconds,
            # Only the rate or a free slot is waited for inline. A cooldown or an open breaker is never slept
            # through, however short: the job is rescheduled and the worker goes back to work.
            wait_for=frozenset({DenyReason.RATE, DenyReason.CONCURRENCY}),
            transient_retries=TRANSIENT_RETRIES,
            throttle_backoff=backoff_seconds,
            failure_backoff=lambda failures: backoff_seconds(failures - 1),  # 0.5-1 s, then 1-2 s
            decide_pause=decide_wait,
            # Inline waits are counted in the job's WaitLog and, like every provider's, in the limiter metrics
            # (snapmatch_limiter_waits covers every provider call).
            record_waits=True,
        )

    def limiter_state(self) -> dict[str, Any]:
        return self.limiter.state()


def _classify(exc: Exception) -> Classified | None:
    if isinstance(exc, genai_errors.APIError):
        kind = classify_error(exc.code, exc.status)
        if kind is ErrorKind.THROTTLED:
            return Classified(Verdict.THROTTLED, retry_delay_seconds(exc.details), detail=exc.status)
        if kind is ErrorKind.TRANSIENT:
            # Raised only once the retries are spent, so after exactly TRANSIENT_RETRIES + 1 failures.
            failures = TRANSIENT_RETRIES + 1
            return Classified(
                Verdict.TRANSIENT, error=GeminiUnavailable(f"Gemini failed {failures} times in a row ({exc.code}).")
            )
        # Gemini answered: it is healthy, the request was not.
        status = str(exc.status or exc.code).lower()
        return Classified(
            Verdict.PERMANENT,
            error=GeminiRejected(f"Gemini refused the request ({exc.code} {exc.status}).", code=f"gemini_{status}"),
        )
    if isinstance(exc, httpx2.HTTPError):  # connection refused or reset, read timeout (the SDK's transport)
        return Classified(
            Verdict.TRANSIENT, error=GeminiUnavailable(f"Gemini could not be reached ({type(exc).__name__}).")
        )
    return None


@dataclass(frozen=True)
class _GeminiWaits(ProviderWaits):
    """Inline waits of one call go to the job's WaitLog; at the deadline, Gemini's failures (or its open breaker)
    end in GeminiUnavailable, a quota that stayed busy in QuotaExceeded."""

    wait_log: WaitLog = field(default_factory=WaitLog)

    def waited(self, reason: str, seconds: float) -> None:
        self.wait_log.add(reason, seconds)

    def reschedule(self, reason: str, delay: float) -> BaseException:
        return RetryLater(max(delay, MIN_RESCHEDULE_SECONDS), reason, PROVIDER)

    def give_up(self, reason: str, delay: float) -> BaseException:
        if reason in (DenyReason.BREAKER_OPEN, "failure"):
            return GeminiUnavailable("Gemini kept failing until the photo's time budget ran out.")
        return QuotaExceeded(
            f"{PROVIDER} {self.operation}: no quota before the photo's time budget ends ({reason}, "
            f"next in {delay:.1f} s)"
        )
