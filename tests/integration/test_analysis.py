"""Photo analysis with the real google-genai client against the loopback Gemini server: immediate mode,
429 with RetryInfo (shared cooldown, reschedule), the time budget, the breaker, costs, batch mode, the API.

Jobs run in this process through RQ's SimpleWorker on a real Redis; SQLite and PostgreSQL both."""

from __future__ import annotations

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from tests.fakes.gemini_server import API_KEY, GeminiFake, coded_photo
from tests.workload import ingest_all, make_event


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with GeminiFake(seed=5, batch_seconds=0.5) as server:
        yield server


@pytest.fixture
def gemini_env(env, fake, monkeypatch):  # type: ignore[no-untyped-def]
    from jobs import analysis, runtime
    from snapmatch import settings

    for name, value in {
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_MAX_INLINE_WAIT_SECONDS": "1",
        "FACE_MIN_SIZE": "80",
    }.items():
        monkeypatch.setenv(name, value)
        env[name] = value
    settings.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    analysis.get_analyzer.cache_clear()
    yield env
    analysis.get_analyzer.cache_clear()


def _work(redis_url: str) -> None:
    connection = redis_lib.Redis.from_url(redis_url)
    queues = [Queue(name, connection=connection) for name in ("photos", "analysis")]
    SimpleWorker(queues, connection=connection).work(burst=True)


def _analysis(photo_id: int):  # type: ignore[no-untyped-def]
    from snapmatch.analysis import records

    return records.get(photo_id)


def _stream(redis_url: str, batch_id: str) -> list[dict]:
    from snapmatch import progress

    return [event for _id, event in progress.read(redis_lib.Redis.from_url(redis_url), batch_id)]


def _batch_of(photo_id: int) -> str:
    from snapmatch import db
    from snapmatch.schema import photos

    with db.connection() as conn:
        return conn.execute(select(photos.c.batch_id).where(photos.c.id == photo_id)).scalar()


def test_photos_are_described_and_the_photo_api_shows_it(gemini_env, fake, redis_url, client, make_user) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import accounts, db, events
    from snapmatch.schema import photos, provider_usage

    email, token = make_user("photographer")
    event = events.create_event(accounts.find_user(email), "Run")
    ids = ingest_all([coded_photo(["1234"], ["podium"], seed=1), coded_photo([], ["cake"], seed=2)], event)
    _work(redis_url)

    first, second = (_analysis(i) for i in ids)
    assert (first.status, second.status) == ("done", "done")
    assert first.numbers == '["1234"]' and "podium" in first.tags
    assert second.numbers == "[]" and "cake" in second.tags
    with db.connection() as conn:
        assert set(conn.execute(select(photos.c.status)).scalars()) == {"done"}
        ops = {r.operation: r.units for r in conn.execute(select(provider_usage)).all() if r.provider == "gemini"}
    assert ops["input_tokens"] > 0 and ops["output_tokens"] > 0
    stages = [e["stage"] for e in _stream(redis_url, _batch_of(ids[0]))]
    assert stages.count("analysis:done") == 2

    body = client.get(f"/api/photos/{ids[0]}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["status"] == "done"
    assert body["analysis"]["status"] == "done"
    assert body["analysis"]["bib_numbers"] == ["1234"]
    assert "podium" in body["analysis"]["tags"]
    assert set(body["analysis"]["quality"]) == {"blurry", "eyes_closed", "overexposed", "underexposed"}


def test_a_429_sets_the_shared_cooldown_and_reschedules_without_a_retry(gemini_env, fake, redis_url) -> None:  # type: ignore[no-untyped-def]
    from snapmatch.analysis.gemini import GeminiAnalyzer
    from snapmatch.settings import get_settings

    fake.configure(throttle_rate=1.0, retry_delay="3s")
    [photo_id] = ingest_all([coded_photo(["77"], seed=3)])
    _work(redis_url)

    connection = redis_lib.Redis.from_url(redis_url)
    first = Job.fetch(f"analysis-{photo_id}-0", connection=connection)
    assert first.return_value() == "rescheduled"
    assert first.retries_left == 2, "the wait did not use a retry"
    assert (first.ended_at - first.started_at).total_seconds() < 3, "the worker did not sleep through the cooldown"
    scheduled = ScheduledJobRegistry(queue=Queue("analysis", connection=connection))
    assert scheduled.get_job_ids() == [f"analysis-{photo_id}-1"]
    delay = scheduled.get_scheduled_time(f"analysis-{photo_id}-1").timestamp() - first.ended_at.timestamp()
    assert 2 <= delay <= 4
    state = GeminiAnalyzer.from_settings(get_settings()).limiter_state()
    assert state["cooldown_until"] is not None, "every process now waits, not only the one told"
    assert fake.stats()["generate_total"] == 1
    warnings = [e for e in _stream(redis_url, _batch_of(photo_id)) if e["stage"] == "analysis:warning"]
    assert warnings and warnings[0]["warning"] == "gemini-quota-exceeded" and warnings[0]["retryAfter"] == 3
    row = _analysis(photo_id)
    assert (row.status, row.enqueue_count) == ("pending", 1)


def test_the_time_budget_ends_in_quota_exceeded_and_faces_stay_done(gemini_env, fake, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobs import analysis
    from snapmatch import db, settings
    from snapmatch.schema import photos

    monkeypatch.setenv("GEMINI_TIMEOUT_SECONDS_TOTAL", "2")
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    fake.configure(throttle_rate=1.0, retry_delay="5s")
    [photo_id] = ingest_all([coded_photo(["5"], seed=4)])
    _work(redis_url)

    row = _analysis(photo_id)
    assert (row.status, row.error_code) == ("quota_exceeded", "quota_exceeded")
    with db.connection() as conn:
        assert conn.execute(select(photos.c.status).where(photos.c.id == photo_id)).scalar() == "done"
    failed = [e for e in _stream(redis_url, _batch_of(photo_id)) if e["stage"] == "analysis:failed"]
    assert failed and failed[0]["status"] == "quota_exceeded"


def test_repeated_server_errors_open_the_shared_breaker(gemini_env, fake, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobs import analysis
    from snapmatch import settings
    from snapmatch.analysis.gemini import GeminiAnalyzer

    monkeypatch.setenv("LIMITER_BREAKER_FAILURES", "3")
    monkeypatch.setenv("LIMITER_BREAKER_SECONDS", "30")
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    fake.configure(error_rate=1.0)
    ids = ingest_all([coded_photo([str(i)], seed=10 + i) for i in range(3)])
    _work(redis_url)

    state = GeminiAnalyzer.from_settings(settings.get_settings()).limiter_state()
    assert state["breaker"] == "open"
    assert fake.stats()["generate_total"] == 3, "once open, no photo reached Gemini"
    assert {_analysis(i).status for i in ids} == {"pending"}, "waiting for the breaker, not failed"


def test_rejected_requests_fail_with_a_code(gemini_env, fake, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobs import analysis
    from snapmatch import settings

    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key")
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    [photo_id] = ingest_all([coded_photo(["9"], seed=6)])
    _work(redis_url)
    row = _analysis(photo_id)
    assert (row.status, row.error_code) == ("failed", "gemini_permission_denied")


def test_the_event_budget_counts_gemini_tokens(gemini_env, fake, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobs import analysis
    from snapmatch import settings

    monkeypatch.setenv("EVENT_BUDGET_USD", "0.0000001")
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    event = make_event()
    first, second = ingest_all([coded_photo(["1"], seed=7), coded_photo(["2"], seed=8)], event)
    _work(redis_url)
    assert _analysis(first).status == "done"  # the first call is allowed; it spends the budget
    row = _analysis(second)
    assert (row.status, row.error_code) == ("quota_exceeded", "budget_exceeded")


def test_batch_mode_submits_polls_and_applies_at_half_price(gemini_env, fake, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    from jobs import analysis
    from snapmatch import costs, settings
    from snapmatch.analysis.overview import analysis_overview
    from snapmatch.db import utcnow
    from snapmatch.redis_client import get_redis

    fake.configure(batch_seconds=2.0)
    monkeypatch.setenv("ANALYSIS_MODE", "batch")
    monkeypatch.setenv("ANALYSIS_BATCH_MAX_REQUESTS", "2")
    monkeypatch.setenv("GEMINI_REQUESTS_PER_MINUTE", "600")  # batch calls share the limiter; not under test here
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    event = make_event()
    ids = ingest_all([coded_photo([str(100 + i)], seed=20 + i) for i in range(3)], event)
    _work(redis_url)
    assert {_analysis(i).status for i in ids} == {"pending"}
    assert fake.stats()["generate_total"] == 0, "batch mode sends no interactive calls"

    assert analysis.submit_analysis_batches() == 1  # two photos fill a batch; the third waits
    assert [b["photos"] for b in analysis_overview(settings.get_settings(), utcnow())["pending_batches"]] == [2]
    monkeypatch.setenv("ANALYSIS_BATCH_MAX_WAIT_SECONDS", "0")
    settings.get_settings.cache_clear()
    assert analysis.submit_analysis_batches() == 1  # the third has waited long enough
    assert analysis.poll_analysis_batches()["applied"] == 0  # still running
    time.sleep(2.1)
    assert analysis.poll_analysis_batches()["applied"] == 3
    assert [_analysis(i).numbers for i in ids] == ['["100"]', '["101"]', '["102"]']
    assert analysis_overview(settings.get_settings(), utcnow())["pending_batches"] == []
    summary = costs.CostTracker.from_settings(get_redis(), settings.get_settings()).event_summary("gemini", event.id)
    assert set(summary["tokens"]) == {"batch_input_tokens", "batch_output_tokens"}
    s = settings.get_settings()
    expected = (
        summary["tokens"]["batch_input_tokens"] * s.GEMINI_PRICE_PER_MILLION_INPUT_TOKENS / 2e6
        + summary["tokens"]["batch_output_tokens"] * s.GEMINI_PRICE_PER_MILLION_OUTPUT_TOKENS / 2e6
    )
    assert summary["estimated_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert fake.stats()["calls"]["batchGenerateContent"] == 2


def test_a_batch_gemini_no_longer_knows_sends_its_photos_back_to_the_line(
    gemini_env, fake, redis_url, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from jobs import analysis
    from snapmatch import settings

    monkeypatch.setenv("ANALYSIS_MODE", "batch")
    monkeypatch.setenv("ANALYSIS_BATCH_MAX_WAIT_SECONDS", "0")
    monkeypatch.setenv("GEMINI_REQUESTS_PER_MINUTE", "600")
    settings.get_settings.cache_clear()
    analysis.get_analyzer.cache_clear()
    [photo_id] = ingest_all([coded_photo(["31"], seed=31)])
    _work(redis_url)
    assert analysis.submit_analysis_batches() == 1
    assert _analysis(photo_id).batch_name.startswith("batches/")
    fake.batches.clear()  # e.g. past Gemini's retention

    assert analysis.poll_analysis_batches() == {"applied": 0, "requeued": 1}
    row = _analysis(photo_id)
    assert (row.status, row.batch_name, row.enqueue_count) == ("pending", None, 1)
    assert analysis.submit_analysis_batches() == 1  # sent again
    fake.configure(batch_seconds=0.0)
    assert analysis.poll_analysis_batches()["applied"] == 1
    assert _analysis(photo_id).numbers == '["31"]'
