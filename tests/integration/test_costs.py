"""Provider usage and costs (database ledger, throttles in Redis): calls per operation and event, prices, the budget.

What an operator reads on the admin page, and when paid calls must stop.
"""

from __future__ import annotations

import pytest
import redis as redis_lib

from snapmatch.costs import BudgetExceeded, CostTracker, Prices
from snapmatch.settings import Settings


@pytest.fixture
def redis(env, redis_url) -> redis_lib.Redis:  # type: ignore[no-untyped-def]
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def tracker(redis, monkeypatch) -> CostTracker:
    for name in ("REKOGNITION_PRICE_PER_IMAGE", "REKOGNITION_PRICE_PER_FACE_MONTH", "EVENT_BUDGET_USD"):
        monkeypatch.delenv(name, raising=False)
    return CostTracker.from_settings(redis, Settings(REDIS_PREFIX="t"))


def test_calls_are_counted_per_operation_and_event_and_priced_from_the_list(tracker: CostTracker) -> None:
    for _ in range(3):
        tracker.record_call("rekognition", "IndexFaces", 1)
    tracker.record_call("rekognition", "SearchFaces", 1)
    tracker.record_call("rekognition", "SearchFacesByImage", 2)
    tracker.record_call("rekognition", "CreateCollection", 1)  # free

    report = tracker.provider_report()["rekognition"]

    assert report["calls"] == {"IndexFaces": 3, "SearchFaces": 1, "SearchFacesByImage": 1, "CreateCollection": 1}
    assert report["calls_total"] == 6
    assert report["calls_cost_usd"] == pytest.approx(0.005)
    assert report["events"]["1"]["calls"] == {"IndexFaces": 3, "SearchFaces": 1, "CreateCollection": 1}
    assert report["events"]["1"]["estimated_cost_usd"] == pytest.approx(0.004)
    assert report["events"]["2"]["estimated_cost_usd"] == pytest.approx(0.001)


def test_stored_faces_add_a_monthly_storage_estimate(tracker: CostTracker) -> None:
    tracker.record_faces_stored("rekognition", 5, 1000)
    tracker.record_faces_stored("rekognition", 5, -200)

    event = tracker.event_summary("rekognition", 5)

    assert event["faces_stored"] == 800
    assert event["storage_cost_per_month_usd"] == pytest.approx(0.008)
    assert event["estimated_cost_usd"] == pytest.approx(0.008)
    assert tracker.provider_report()["rekognition"]["faces_stored"] == 800


def test_throttles_are_counted_apart_from_billable_calls(tracker: CostTracker) -> None:
    tracker.record_throttle("rekognition", "IndexFaces")
    tracker.record_throttle("rekognition", "IndexFaces")
    tracker.record_throttle("rekognition", "SearchFaces")

    report = tracker.provider_report()["rekognition"]

    assert report["throttles"] == {"IndexFaces": 2, "SearchFaces": 1}
    assert report["throttles_total"] == 3
    assert report["calls_total"] == 0
    assert report["estimated_cost_usd"] == 0


def test_prices_come_from_the_environment(redis, monkeypatch) -> None:
    monkeypatch.setenv("REKOGNITION_PRICE_PER_IMAGE", "0.0008")
    monkeypatch.setenv("REKOGNITION_PRICE_PER_FACE_MONTH", "0.00002")
    tracker = CostTracker.from_settings(redis, Settings(REDIS_PREFIX="t"))

    tracker.record_call("rekognition", "IndexFaces", 1, units=10)
    tracker.record_faces_stored("rekognition", 1, 100)

    assert tracker.event_cost("rekognition", 1) == pytest.approx(0.008 + 0.002)


def test_without_a_budget_nothing_is_ever_refused(tracker: CostTracker) -> None:
    tracker.record_call("rekognition", "IndexFaces", 1, units=1_000_000)

    tracker.check_budget(1)


def test_the_budget_stops_paid_calls_of_that_event_only(redis, monkeypatch) -> None:
    monkeypatch.setenv("EVENT_BUDGET_USD", "0.0025")
    tracker = CostTracker.from_settings(redis, Settings(REDIS_PREFIX="t"))
    tracker.record_call("rekognition", "IndexFaces", 1)
    tracker.record_call("rekognition", "IndexFaces", 1)
    tracker.check_budget(1)  # 0.002 spent: one more call is fine

    tracker.record_call("rekognition", "SearchFaces", 1)
    with pytest.raises(BudgetExceeded) as info:
        tracker.check_budget(1)

    assert info.value.code == "budget_exceeded"
    assert info.value.spent_usd == pytest.approx(0.003)
    assert info.value.budget_usd == pytest.approx(0.0025)
    tracker.check_budget(2)
    assert tracker.provider_report()["rekognition"]["event_budget_usd"] == pytest.approx(0.0025)


def test_spending_survives_a_redis_flush(redis) -> None:  # type: ignore[no-untyped-def]
    tracker = CostTracker(redis, prefix="t", prices=Prices.from_settings(Settings()), event_budget_usd=0.0015)
    tracker.record_call("rekognition", "IndexFaces", 1)
    tracker.record_call("rekognition", "SearchFaces", 1)
    tracker.record_throttle("rekognition", "SearchFaces")
    redis.flushdb()

    report = tracker.provider_report()["rekognition"]
    assert report["calls_total"] == 2 and report["throttles_total"] == 0
    with pytest.raises(BudgetExceeded):
        tracker.check_budget(1)


def test_other_providers_appear_once_they_have_counters(tracker: CostTracker) -> None:
    tracker.record_call("gemini", "GenerateContent", 3)

    report = tracker.provider_report()

    assert set(report) == {"gemini", "rekognition"}
    assert report["gemini"]["calls"] == {"GenerateContent": 1}
    assert report["gemini"]["estimated_cost_usd"] == 0  # no price configured for it
