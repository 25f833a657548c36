"""Progress streams (issue 13, item 7): a quiet stream stays open, then delivers what follows."""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_lib

from tests.images import jpeg


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/snapmatch.db"  # Redis behaviour, not SQL: one backend is enough


def test_a_blocking_read_longer_than_the_socket_timeout_returns_empty_instead_of_failing(redis_url) -> None:
    from snapmatch import progress

    client = redis_lib.Redis.from_url(redis_url, socket_timeout=1)
    started = time.monotonic()
    assert progress.read(client, "quiet-batch", "0", block_ms=3000) == []
    assert time.monotonic() - started < 1.5


def test_the_progress_client_waits_longer_than_the_stream_heartbeat(env) -> None:  # type: ignore[no-untyped-def]
    from snapmatch.redis_client import get_blocking_redis
    from webapp.progress import HEARTBEAT_MS

    timeout = get_blocking_redis().connection_pool.connection_kwargs["socket_timeout"]
    assert timeout * 1000 > HEARTBEAT_MS


@pytest.mark.slow
def test_a_stream_stays_open_through_60_quiet_seconds_then_delivers_the_rest(env, processes) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import progress
    from snapmatch.progress import Stage
    from tests.integration.test_end_to_end import new_account

    url = processes.web()  # no worker: the photo stays queued and the stream has nothing to say
    photographer = new_account(env, "pho@example.com", "photographer")
    event = photographer.post(f"{url}/api/events", json={"name": "Quiet"}).json()
    upload = photographer.post(f"{url}/api/events/{event['id']}/photos", files=[("files", ("a.jpg", jpeg()))]).json()
    batch_id, photo_id = upload["batch_id"], upload["photos"][0]["photo_id"]

    stream = photographer.get(f"{url}/api/batches/{batch_id}/events", stream=True, timeout=(5, 40))
    assert stream.status_code == 200
    lines = stream.iter_lines(decode_unicode=True)
    seen: list[str] = []

    def read_until(stage: str) -> None:
        for line in lines:
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
                if seen[-1] == stage:
                    return
            if line.startswith("data: ") and '"code"' in line and "error" in json.loads(line[6:]):
                raise AssertionError(f"the stream reported an error: {line}")
        raise AssertionError(f"the stream ended before {stage}; saw {seen}")

    read_until(Stage.QUEUED.value)
    quiet_until = time.monotonic() + 60
    keep_alives = 0
    while time.monotonic() < quiet_until:
        line = next(lines)
        assert not line.startswith("event: "), line
        keep_alives += line == ": keep-alive"
    assert keep_alives >= 3  # one per heartbeat (15 s): the stream was alive all along

    redis = redis_lib.Redis.from_url(env["REDIS_URL"])
    progress.publish(redis, batch_id, Stage.DONE, photo_id, faces=0)
    progress.publish(redis, batch_id, Stage.BATCH_DONE, None, counts={"done": 1})
    read_until(Stage.BATCH_DONE.value)
    assert seen[-2:] == [Stage.DONE.value, Stage.BATCH_DONE.value]
