"""Progress streams over real gunicorn (gevent workers) and real Redis: a quiet stream stays open,
then delivers what follows (issue 13, item 7); resuming with Last-Event-ID delivers every later
event exactly once; an attendee's stream carries only their own news (issue 15)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis as redis_lib
import requests

from snapmatch import accounts, events, progress
from snapmatch.cache import invalidate_my_photos
from snapmatch.ingest import ensure_batch
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


class Reader:
    """Reads one SSE response on a thread; ``frames`` holds (id, event, data) as they arrive."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(url, headers=headers, stream=True, timeout=30)
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.frames: list[tuple[str | None, str, dict]] = []
        self.ended = threading.Event()
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self.response.iter_lines(decode_unicode=True):
                if raw:
                    name, _, value = raw.partition(":")
                    fields[name] = value.strip()
                    continue
                if "data" in fields:
                    with self.changed:
                        self.frames.append(
                            (fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
                        )
                        self.changed.notify_all()
                fields = {}
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test (urllib3 drops its file object mid-read)
        finally:
            self.ended.set()
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list[tuple[str | None, str, dict]]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.frames) >= n or self.ended.is_set(), timeout)
            return list(self.frames)

    def close(self) -> None:
        self.response.close()


@pytest.fixture
def web(processes) -> str:  # type: ignore[no-untyped-def]
    return processes.web()


def test_batch_stream_resumes_after_last_event_id_exactly_once(web, env, redis_url) -> None:  # type: ignore[no-untyped-def]
    owner = accounts.create_user("owner@example.com", "photographer", "correct horse battery")
    token = accounts.create_token("owner@example.com")
    event = events.create_event(owner, "Resume")
    batch = ensure_batch(event.id, owner.id, None)
    conn = redis_lib.Redis.from_url(redis_url)
    for n in range(50):
        progress.publish(conn, batch, progress.Stage.QUEUED, n, filename=f"{n}.jpg")

    url = f"{web}/api/batches/{batch}/events"
    first = Reader(url, token)
    seen = first.wait_for(50)
    assert [d["photoId"] for _i, _e, d in seen] == list(range(50))
    first.close()
    last_id = seen[29][0]

    again = Reader(url, token, last_event_id=last_id)
    assert [d["photoId"] for _i, _e, d in again.wait_for(20)] == list(range(30, 50))
    # Live events after the replay, then the end of the batch closes the stream.
    for n in range(50, 60):
        progress.publish(conn, batch, progress.Stage.DONE, n)
    progress.publish(conn, batch, progress.Stage.BATCH_DONE, None, counts={"done": 60})
    assert again.ended.wait(10), "the stream did not end after batch:done"
    got = [d.get("photoId") for _i, _e, d in again.frames]
    assert got == [*range(30, 60), None]
    assert again.frames[-1][1] == "batch:done"
    ids = [i for i, _e, _d in again.frames]
    assert len(set(ids)) == len(ids)

    # Only the batch's owner may follow it.
    accounts.create_user("other@example.com", "photographer", "correct horse battery")
    other = accounts.create_token("other@example.com")
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 404


def test_attendee_stream_tells_only_that_attendee_and_counts_indexing(web, env, redis_url) -> None:  # type: ignore[no-untyped-def]
    owner = accounts.create_user("owner@example.com", "photographer", "correct horse battery")
    event = events.create_event(owner, "Gallery")
    me = accounts.create_user("me@example.com", "attendee", "correct horse battery")
    them = accounts.create_user("them@example.com", "attendee", "correct horse battery")
    stranger = accounts.create_user("stranger@example.com", "attendee", "correct horse battery")
    for user in (me, them):
        events.join_event(user, event.id, event.access_code)
    token = accounts.create_token("me@example.com")
    url = f"{web}/api/events/{event.id}/events"
    headers = {"Authorization": f"Bearer {accounts.create_token('stranger@example.com')}"}
    assert requests.get(url, headers=headers, timeout=10).status_code == 403
    assert stranger.id

    stream = Reader(url, token)
    opening = stream.wait_for(2)
    assert {e for _i, e, _d in opening} == {"my-photos", "indexing"}
    assert next(d for _i, e, d in opening if e == "indexing") == {"checked": 0, "total": 0}

    conn = redis_lib.Redis.from_url(redis_url)
    invalidate_my_photos(conn, event.id, [them.id])
    invalidate_my_photos(conn, event.id, [me.id, them.id])
    frames = stream.wait_for(3)
    mine = [f for f in frames[len(opening) :] if f[1] == "my-photos"]
    assert len(mine) == 1 and mine[0][0] is not None
    stream.close()

    # Resuming after that id repeats nothing; the next change for me arrives.
    resumed = Reader(url, token, last_event_id=mine[0][0])
    invalidate_my_photos(conn, event.id, [me.id])
    frames = resumed.wait_for(2)
    assert [e for _i, e, _d in frames].count("my-photos") == 1
    resumed.close()
