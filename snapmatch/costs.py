"""Paid provider calls counted in Redis per provider, operation and event, priced from configurable rates.

Feeds ``GET /api/admin/providers`` and the optional per-event budget (``EVENT_BUDGET_USD``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import Connection, func, insert, select

from snapmatch import db, metrics
from snapmatch.errors import QuotaExceeded
from snapmatch.schema import provider_usage
from snapmatch.settings import Settings, get_settings


class BudgetExceeded(QuotaExceeded):
    """The event has spent its ``EVENT_BUDGET_USD``: paid calls stop, the photo waits with this status."""

    code = "budget_exceeded"
    status = 429

    def __init__(self, event_id: int | str, spent_usd: float, budget_usd: float) -> None:
        super().__init__(f"event {event_id} reached its provider budget: ${spent_usd:.4f} of ${budget_usd:.4f} spent")
        self.event_id = event_id
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


# Rekognition bills the face APIs per image analysed ("Group 1": IndexFaces, SearchFaces, SearchFacesByImage,
# first million images a month) and stored face vectors per face-month. Collection management is free.
REKOGNITION_IMAGE_OPERATIONS = ("IndexFaces", "SearchFaces", "SearchFacesByImage")
# Gemini bills tokens: ledger rows whose operation ends with this count tokens, not calls.
TOKENS_SUFFIX = "_tokens"


@dataclass(frozen=True)
class Prices:
    """USD per billable unit, by provider and operation; an operation not listed costs nothing."""

    per_call: dict[str, dict[str, float]] = field(default_factory=dict)
    # USD per stored face (or other stored item) per month, by provider.
    per_stored_month: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        """Public list prices by default; override with REKOGNITION_PRICE_PER_IMAGE / _PER_FACE_MONTH."""
        from snapmatch.analysis.quota import token_prices

        per_image = settings.REKOGNITION_PRICE_PER_IMAGE
        per_face_month = settings.REKOGNITION_PRICE_PER_FACE_MONTH
        gemini = token_prices(
            settings.GEMINI_PRICE_PER_MILLION_INPUT_TOKENS, settings.GEMINI_PRICE_PER_MILLION_OUTPUT_TOKENS
        )
        return cls(
            per_call={"rekognition": dict.fromkeys(REKOGNITION_IMAGE_OPERATIONS, per_image), "gemini": gemini},
            per_stored_month={"rekognition": per_face_month},
        )

    def call_price(self, provider: str, operation: str) -> float:
        return self.per_call.get(provider, {}).get(operation, 0.0)


def _int_map(raw: dict[bytes | str, bytes | str]) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


class CostTracker:
    """Billable usage in the database (``provider_usage``), so a Redis flush never resets what an
    event has spent; throttles, an operational signal only, are counted in Redis.

    A row per answered billable call (operation, event, units) and per change of stored faces
    (operation ``faces_stored``, units = +added / -deleted). Costs are units x current prices.
    """

    FACES_STORED = "faces_stored"

    def __init__(
        self,
        redis: Redis,
        prefix: str = "snapmatch",
        prices: Prices | None = None,
        event_budget_usd: float | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.prices = prices or Prices.from_settings(get_settings())
        self.event_budget_usd = event_budget_usd

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings | None = None) -> CostTracker:
        settings = settings or get_settings()
        budget = settings.EVENT_BUDGET_USD
        return cls(redis, settings.REDIS_PREFIX, Prices.from_settings(settings), budget if budget > 0 else None)

    def _throttle_key(self, provider: str) -> str:
        return f"{self.prefix}:costs:{provider}:throttles"

    # -- recording ---------------------------------------------------------------------------------------

    def _insert(
        self, provider: str, operation: str, event_id: int | str | None, units: int, conn: Connection | None = None
    ) -> None:
        row = insert(provider_usage).values(
            provider=provider,
            operation=operation,
            event_id=int(event_id) if event_id is not None else None,
            units=units,
            created_at=db.utcnow(),
        )
        if conn is not None:  # the caller's transaction: the usage is written with the result it paid for
            conn.execute(row)
            return
        with db.transaction() as own:
            own.execute(row)

    def record_call(
        self,
        provider: str,
        operation: str,
        event_id: int | str | None = None,
        units: int = 1,
        conn: Connection | None = None,
    ) -> None:
        """Count ``units`` billable units of one answered call (throttled or failed attempts are not billed).

        Token-priced providers (Gemini) record one row per token kind, with operation names ending in ``_tokens``.
        """
        self._insert(provider, operation, event_id, units, conn)
        metrics.PROVIDER_CALLS.labels(provider, operation).inc(units)
        metrics.PROVIDER_COST.labels(provider).inc(units * self.prices.call_price(provider, operation))

    def record_throttle(self, provider: str, operation: str) -> None:
        self.redis.hincrby(self._throttle_key(provider), operation, 1)
        metrics.PROVIDER_THROTTLES.labels(provider, operation).inc()

    def record_faces_stored(self, provider: str, event_id: int | str, delta: int) -> None:
        """Faces added (+) or deleted (-) in the provider's storage, for the per-face-month estimate."""
        if delta:
            self._insert(provider, self.FACES_STORED, event_id, delta)

    # -- reading -----------------------------------------------------------------------------------------

    def _usage(self, provider: str, event_id: int | str | None = None) -> dict[tuple[int | None, str], int]:
        """(event_id, operation) -> units, for one provider (and one event)."""
        query = (
            select(provider_usage.c.event_id, provider_usage.c.operation, func.sum(provider_usage.c.units))
            .where(provider_usage.c.provider == provider)
            .group_by(provider_usage.c.event_id, provider_usage.c.operation)
        )
        if event_id is not None:
            query = query.where(provider_usage.c.event_id == int(event_id))
        with db.connection() as conn:
            return {(e, op): int(n) for e, op, n in conn.execute(query).all()}

    def _summary(self, provider: str, usage: dict[str, int]) -> dict[str, Any]:
        calls = {op: n for op, n in usage.items() if op != self.FACES_STORED and not op.endswith(TOKENS_SUFFIX)}
        tokens = {op: n for op, n in usage.items() if op.endswith(TOKENS_SUFFIX)}
        faces = max(0, usage.get(self.FACES_STORED, 0))
        calls_cost = sum(n * self.prices.call_price(provider, op) for op, n in (calls | tokens).items())
        storage_month = faces * self.prices.per_stored_month.get(provider, 0.0)
        return {
            "calls": calls,
            "calls_total": sum(calls.values()),
            "tokens": tokens,
            "faces_stored": faces,
            "calls_cost_usd": round(calls_cost, 6),
            "storage_cost_per_month_usd": round(storage_month, 6),
            "estimated_cost_usd": round(calls_cost + storage_month, 6),
        }

    def event_summary(self, provider: str, event_id: int | str) -> dict[str, Any]:
        """Calls by operation, faces stored, and cost of one event (calls plus one month of face storage)."""
        return self._summary(provider, {op: n for (_e, op), n in self._usage(provider, event_id).items()})

    def event_cost(self, provider: str, event_id: int | str) -> float:
        return float(self.event_summary(provider, event_id)["estimated_cost_usd"])

    def event_total_cost(self, event_id: int | str) -> float:
        """What the event has spent with every provider (the budget counts them all)."""
        with db.connection() as conn:
            providers = list(
                conn.execute(
                    select(provider_usage.c.provider).where(provider_usage.c.event_id == int(event_id)).distinct()
                ).scalars()
            )
        return sum(self.event_cost(provider, event_id) for provider in providers)

    def check_budget(self, event_id: int | str, provider: str | None = None) -> None:
        """Raise ``BudgetExceeded`` when the event has reached ``EVENT_BUDGET_USD`` across all providers
        (``provider`` is kept for callers that name theirs); no-op without a budget.

        Checked before each paid call, so concurrent workers may overshoot by at most one call each.
        """
        if self.event_budget_usd is None:
            return
        spent = self.event_total_cost(event_id)
        if spent >= self.event_budget_usd:
            raise BudgetExceeded(event_id, spent, self.event_budget_usd)

    def provider_summary(self, provider: str) -> dict[str, Any]:
        usage = self._usage(provider)
        totals: dict[str, int] = {}
        per_event: dict[str, dict[str, int]] = {}
        for (event_id, op), n in usage.items():
            totals[op] = totals.get(op, 0) + n
            if event_id is not None:
                per_event.setdefault(str(event_id), {})[op] = n
        throttles = _int_map(self.redis.hgetall(self._throttle_key(provider)))
        return {
            **self._summary(provider, totals),
            "throttles": throttles,
            "throttles_total": sum(throttles.values()),
            "event_budget_usd": self.event_budget_usd,
            "events": {e: self._summary(provider, per_event[e]) for e in sorted(per_event, key=_sort_key)},
        }

    def providers(self) -> list[str]:
        """Providers with recorded usage, plus those we have prices for."""
        with db.connection() as conn:
            found = set(conn.execute(select(provider_usage.c.provider).distinct()).scalars())
        return sorted(found | set(self.prices.per_call) | set(self.prices.per_stored_month))

    def provider_report(self) -> dict[str, dict[str, Any]]:
        """Per provider: calls by operation, throttles, estimated cost in total and per event."""
        return {provider: self.provider_summary(provider) for provider in self.providers()}


def _sort_key(event_id: str) -> tuple[int, int | str]:
    return (0, int(event_id)) if event_id.isdigit() else (1, event_id)
