"""Paid provider calls counted in Redis per provider, operation and event, priced from configurable rates.

Feeds ``GET /api/admin/providers`` and the optional per-event budget (``EVENT_BUDGET_USD``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from snapmatch.errors import QuotaExceeded
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


@dataclass(frozen=True)
class Prices:
    """USD per billable unit, by provider and operation; an operation not listed costs nothing."""

    per_call: dict[str, dict[str, float]] = field(default_factory=dict)
    # USD per stored face (or other stored item) per month, by provider.
    per_stored_month: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        """Public list prices by default; override with REKOGNITION_PRICE_PER_IMAGE / _PER_FACE_MONTH."""
        per_image = settings.REKOGNITION_PRICE_PER_IMAGE
        per_face_month = settings.REKOGNITION_PRICE_PER_FACE_MONTH
        return cls(
            per_call={"rekognition": dict.fromkeys(REKOGNITION_IMAGE_OPERATIONS, per_image)},
            per_stored_month={"rekognition": per_face_month},
        )

    def call_price(self, provider: str, operation: str) -> float:
        return self.per_call.get(provider, {}).get(operation, 0.0)


def _int_map(raw: dict[bytes | str, bytes | str]) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


class CostTracker:
    """Counters under ``{prefix}:costs:{provider}:...``; every method is one or two atomic Redis commands.

    Keys per provider: ``calls`` (hash op -> n), ``throttles`` (hash op -> n), ``events`` (set of event ids),
    ``event:{id}:calls`` (hash op -> n), ``event:{id}:faces`` (string: faces currently stored).
    """

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

    def _key(self, provider: str, *parts: object) -> str:
        return ":".join([self.prefix, "costs", provider, *(str(p) for p in parts)])

    # -- recording ---------------------------------------------------------------------------------------

    def record_call(self, provider: str, operation: str, event_id: int | str | None = None, units: int = 1) -> None:
        """Count ``units`` billable units of one answered call (throttled or failed attempts are not billed)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self._key(provider, "calls"), operation, units)
        if event_id is not None:
            pipe.sadd(self._key(provider, "events"), str(event_id))
            pipe.hincrby(self._key(provider, "event", event_id, "calls"), operation, units)
        pipe.execute()

    def record_throttle(self, provider: str, operation: str) -> None:
        self.redis.hincrby(self._key(provider, "throttles"), operation, 1)

    def record_faces_stored(self, provider: str, event_id: int | str, delta: int) -> None:
        """Faces added (+) or deleted (-) in the provider's storage, for the per-face-month estimate."""
        if delta == 0:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self._key(provider, "events"), str(event_id))
        pipe.incrby(self._key(provider, "event", event_id, "faces"), delta)
        pipe.execute()

    # -- reading -----------------------------------------------------------------------------------------

    def event_ids(self, provider: str) -> list[str]:
        members = self.redis.smembers(self._key(provider, "events"))
        return sorted((m.decode() if isinstance(m, bytes) else m for m in members), key=_sort_key)

    def _call_cost(self, provider: str, calls: dict[str, int]) -> float:
        return sum(n * self.prices.call_price(provider, op) for op, n in calls.items())

    def event_summary(self, provider: str, event_id: int | str) -> dict[str, Any]:
        """Calls by operation, faces stored, and cost of one event (calls plus one month of face storage)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self._key(provider, "event", event_id, "calls"))
        pipe.get(self._key(provider, "event", event_id, "faces"))
        raw_calls, raw_faces = pipe.execute()
        calls = _int_map(raw_calls)
        faces = max(0, int(raw_faces or 0))
        calls_cost = self._call_cost(provider, calls)
        storage_month = faces * self.prices.per_stored_month.get(provider, 0.0)
        return {
            "calls": calls,
            "faces_stored": faces,
            "calls_cost_usd": round(calls_cost, 6),
            "storage_cost_per_month_usd": round(storage_month, 6),
            "estimated_cost_usd": round(calls_cost + storage_month, 6),
        }

    def event_cost(self, provider: str, event_id: int | str) -> float:
        return float(self.event_summary(provider, event_id)["estimated_cost_usd"])

    def check_budget(self, event_id: int | str, provider: str = "rekognition") -> None:
        """Raise ``BudgetExceeded`` when the event has reached ``EVENT_BUDGET_USD``; no-op without a budget.

        Checked before each paid call, so concurrent workers may overshoot by at most one call each.
        """
        if self.event_budget_usd is None:
            return
        spent = self.event_cost(provider, event_id)
        if spent >= self.event_budget_usd:
            raise BudgetExceeded(event_id, spent, self.event_budget_usd)

    def provider_summary(self, provider: str) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self._key(provider, "calls"))
        pipe.hgetall(self._key(provider, "throttles"))
        raw_calls, raw_throttles = pipe.execute()
        calls = _int_map(raw_calls)
        throttles = _int_map(raw_throttles)
        events = {event_id: self.event_summary(provider, event_id) for event_id in self.event_ids(provider)}
        calls_cost = self._call_cost(provider, calls)
        storage_month = sum(e["storage_cost_per_month_usd"] for e in events.values())
        return {
            "calls": calls,
            "calls_total": sum(calls.values()),
            "throttles": throttles,
            "throttles_total": sum(throttles.values()),
            "faces_stored": sum(e["faces_stored"] for e in events.values()),
            "calls_cost_usd": round(calls_cost, 6),
            "storage_cost_per_month_usd": round(storage_month, 6),
            "estimated_cost_usd": round(calls_cost + storage_month, 6),
            "event_budget_usd": self.event_budget_usd,
            "events": events,
        }

    def providers(self) -> list[str]:
        """Providers with any counter in Redis, plus those we have prices for."""
        found = set(self.prices.per_call) | set(self.prices.per_stored_month)
        for raw in self.redis.scan_iter(match=f"{self.prefix}:costs:*", count=500):
            name = raw.decode() if isinstance(raw, bytes) else raw
            found.add(name[len(self.prefix) + len(":costs:") :].split(":", 1)[0])
        return sorted(found)

    def provider_report(self) -> dict[str, dict[str, Any]]:
        """Per provider: calls by operation, throttles, estimated cost in total and per event."""
        return {provider: self.provider_summary(provider) for provider in self.providers()}


def _sort_key(event_id: str) -> tuple[int, int | str]:
    return (0, int(event_id)) if event_id.isdigit() else (1, event_id)
