"""The analysis stage's pure rules: Gemini's retry delays, error kinds, waits, prices, answers, queries."""

from __future__ import annotations

import json
import random

import pytest

from snapmatch.analysis import effective_mode
from snapmatch.analysis.description import UnreadableAnswer, normalize_number, parse_description
from snapmatch.analysis.quota import (
    ErrorKind,
    WaitDecision,
    backoff_seconds,
    classify_error,
    decide_wait,
    parse_duration,
    retry_delay_seconds,
    token_operations,
    token_prices,
)
from snapmatch.analysis.search import InvalidSearch, parse_query
from snapmatch.analysis.stage import should_submit_batch
from snapmatch.schema import AnalysisMode
from snapmatch.settings import Settings

QUOTA_BODY = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"},
        ],
    }
}


def test_retry_delay_is_read_from_retry_info_in_the_error_body() -> None:
    assert retry_delay_seconds(QUOTA_BODY) == 3.0
    assert retry_delay_seconds(QUOTA_BODY["error"]) == 3.0
    assert retry_delay_seconds(QUOTA_BODY["error"]["details"]) == 3.0
    fractional = {"error": {"details": [{"@type": QUOTA_BODY["error"]["details"][1]["@type"], "retryDelay": "0.250s"}]}}
    assert retry_delay_seconds(fractional) == 0.25


@pytest.mark.parametrize(
    "details",
    [None, {}, {"error": {}}, {"error": {"details": "x"}}, [{"@type": "other", "retryDelay": "3s"}], "text"],
)
def test_no_retry_info_means_no_delay(details) -> None:  # type: ignore[no-untyped-def]
    assert retry_delay_seconds(details) is None


@pytest.mark.parametrize("text,seconds", [("3s", 3.0), ("1.5s", 1.5), (" 10s ", 10.0), ("3", None), ("-1s", None)])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "code,status,kind",
    [
        (429, "RESOURCE_EXHAUSTED", ErrorKind.THROTTLED),
        (None, "RESOURCE_EXHAUSTED", ErrorKind.THROTTLED),
        (500, "INTERNAL", ErrorKind.TRANSIENT),
        (503, "UNAVAILABLE", ErrorKind.TRANSIENT),
        (408, None, ErrorKind.TRANSIENT),
        (400, "INVALID_ARGUMENT", ErrorKind.REJECTED),
        (403, "PERMISSION_DENIED", ErrorKind.REJECTED),
        (404, "NOT_FOUND", ErrorKind.REJECTED),
    ],
)
def test_errors_are_classified(code, status, kind) -> None:  # type: ignore[no-untyped-def]
    assert classify_error(code, status) is kind


def test_waits_are_inline_rescheduled_or_given_up() -> None:
    assert decide_wait(now=100, delay=0.5, deadline=200, max_inline_seconds=2) is WaitDecision.INLINE
    assert decide_wait(now=100, delay=3, deadline=200, max_inline_seconds=2) is WaitDecision.RESCHEDULE
    assert decide_wait(now=100, delay=3, deadline=102, max_inline_seconds=2) is WaitDecision.GIVE_UP
    assert decide_wait(now=100, delay=0.1, deadline=100.05, max_inline_seconds=2) is WaitDecision.GIVE_UP


def test_backoff_grows_never_zero_and_is_capped() -> None:
    rng = random.Random(1)
    values = [backoff_seconds(n, rng) for n in range(10)]
    assert all(v > 0 for v in values)
    assert values[0] <= 1.0 and max(values) <= 60.0
    assert backoff_seconds(3, random.Random(2)) >= 4.0


def test_batch_tokens_cost_half() -> None:
    prices = token_prices(0.30, 2.50)
    assert prices["input_tokens"] == pytest.approx(0.30e-6)
    assert prices["batch_input_tokens"] == pytest.approx(prices["input_tokens"] / 2)
    assert prices["batch_output_tokens"] == pytest.approx(prices["output_tokens"] / 2)
    assert token_operations(batch=True) == ("batch_input_tokens", "batch_output_tokens")


def _answer(**overrides) -> str:  # type: ignore[no-untyped-def]
    base = {
        "caption": " Runner 42 crossing the line ",
        "tags": ["Finish Line", "finish line", "medal"],
        "bib_numbers": ["#0042", "42", "no digits"],
        "visible_text": ["ACME RUN 2026"],
        "people_count": -3,
        "blurry": False,
        "eyes_closed": True,
        "overexposed": False,
        "underexposed": False,
    }
    return json.dumps(base | overrides)


def test_answers_are_validated_and_cleaned() -> None:
    desc = parse_description(_answer())
    assert desc.caption == "Runner 42 crossing the line"
    assert desc.tags == ["finish line", "medal"]
    assert desc.numbers == ["0042", "42"]
    assert desc.people_count == 0
    assert desc.eyes_closed is True
    assert desc.search_text() == "runner 42 crossing the line finish line medal acme run 2026"


@pytest.mark.parametrize("text", [None, "", "not json", json.dumps({"caption": "only"}), _answer(people_count="x")])
def test_unusable_answers_are_typed_errors(text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnreadableAnswer) as err:
        parse_description(text)
    assert err.value.code == "analysis_unreadable"


def test_numbers_keep_leading_zeros() -> None:
    assert normalize_number("007") == "007"
    assert normalize_number("bib 12-34") == "1234"
    assert normalize_number("none") is None


def test_queries_split_into_numbers_and_words() -> None:
    query = parse_query("  Podium 1234 cake 1234 ")
    assert query.numbers == ["1234"]
    assert query.words == ["podium", "cake"]
    assert parse_query("Finish-line!").words == ["finish", "line"]


@pytest.mark.parametrize(
    "q,code",
    [
        ("", "missing_query"),
        ("   ", "missing_query"),
        ("!!!", "invalid_query"),
        ("x" * 201, "query_too_long"),
        (" ".join("w" * 11), "query_too_long"),
    ],
)
def test_bad_queries_are_refused_with_a_code(q: str, code: str) -> None:
    with pytest.raises(InvalidSearch) as err:
        parse_query(q)
    assert err.value.code == code


def test_batches_are_sent_when_full_or_old_enough() -> None:
    assert not should_submit_batch(0, 1e9, 10, 60)
    assert not should_submit_batch(3, 10, 10, 60)
    assert should_submit_batch(10, 0, 10, 60)
    assert should_submit_batch(3, 60, 10, 60)


def test_the_event_mode_overrides_the_setting() -> None:
    batch = Settings(ANALYSIS_MODE="batch")
    assert effective_mode(None, batch) is AnalysisMode.BATCH
    assert effective_mode("immediate", batch) is AnalysisMode.IMMEDIATE
    assert effective_mode(None, Settings(ANALYSIS_MODE="nonsense")) is AnalysisMode.IMMEDIATE


def test_the_fake_server_reads_what_coded_photos_carry() -> None:
    import cv2
    import numpy as np

    from tests.fakes.gemini_server import coded_photo, decode_photo, describe

    data = coded_photo(["1234", "56", "7"], ["podium", "cake"], seed=3)
    assert decode_photo(data) == (["1234", "56", "7"], ["podium", "cake"])
    # Survives what the pipeline does to a working copy: downscaling and JPEG again.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    small = cv2.resize(bgr, (400, 300), interpolation=cv2.INTER_AREA)
    again = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    assert decode_photo(again) == (["1234", "56", "7"], ["podium", "cake"])
    assert describe(coded_photo([], seed=4))["bib_numbers"] == []
    plain = cv2.imencode(".jpg", np.full((300, 400, 3), 128, np.uint8))[1].tobytes()
    assert decode_photo(plain) is None


def test_rescheduled_jobs_are_spread_over_the_time_the_waiting_ones_need() -> None:
    from snapmatch.analysis.quota import spread_delay

    rng = random.Random(3)
    delays = [spread_delay(3.0, waiting=40, rate_per_second=0.5, rng=rng) for _ in range(200)]
    assert min(delays) >= 3.0 and max(delays) <= 3.0 + 80.0
    assert max(delays) - min(delays) > 40, "spread, not all at once"
    assert spread_delay(3.0, waiting=0, rate_per_second=0.5) == 3.0
