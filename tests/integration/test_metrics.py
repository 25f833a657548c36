"""/metrics in multiprocess mode with two gunicorn processes and two worker processes: after a test
batch, its figures equal what the admin API says; only admins or loopback may read it."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.images import jpeg
from tests.integration.test_end_to_end import new_account, wait_for

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(figures, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_metrics_match_the_admin_api_across_processes(env, processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    processes.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    url = processes.web()  # gunicorn with two worker processes
    processes.worker("metrics-worker-1")
    processes.worker("metrics-worker-2")
    photographer = new_account(env, "pho@example.com", "photographer")
    admin = new_account(env, "admin@example.com", "admin")
    attendee = new_account(env, "att@example.com", "attendee")
    event = photographer.post(f"{url}/api/events", json={"name": "Relay"}).json()

    batch_ids = []
    for i in range(6):  # several requests, so both web processes take some
        files = [("files", (f"p{i}-{j}.jpg", jpeg(320, 240, seed=10 * i + j))) for j in range(2)]
        resp = photographer.post(f"{url}/api/events/{event['id']}/photos", files=files)
        assert resp.status_code == 202
        batch_ids.append(resp.json()["batch_id"])
    dup = photographer.post(
        f"{url}/api/events/{event['id']}/photos", files=[("files", ("again.jpg", jpeg(320, 240, seed=0)))]
    )
    assert dup.json()["photos"][0]["status"] == "duplicate"
    bad = photographer.post(f"{url}/api/events/{event['id']}/photos", files=[("files", ("x.jpg", b"not an image"))])
    assert bad.json()["photos"][0]["status"] == "rejected"

    def all_done():  # type: ignore[no-untyped-def]
        counts = photographer.get(f"{url}/api/events/{event['id']}").json()["photo_counts"]
        return counts.get("done") == 12

    wait_for(all_done, 120, "12 photos done")
    stats = wait_for(
        lambda: (s := admin.get(f"{url}/api/admin/queue/stats").json())["queues"]["photos"]["finished"] == 12 and s,
        20,
        "finished registry to hold 12 jobs",
    )

    assert attendee.get(f"{url}/metrics").status_code == 403
    text = admin.get(f"{url}/metrics").text
    # Loopback without a token is allowed too (a Prometheus on this machine).
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
    figures = samples(text)
    photos_queue = stats["queues"]["photos"]
    assert value(figures, "snapmatch_uploads_total", outcome="accepted") == 12
    assert value(figures, "snapmatch_uploads_total", outcome="duplicate") == 1
    assert value(figures, "snapmatch_uploads_total", outcome="rejected") == 1
    finished = value(figures, "snapmatch_jobs_total", queue="photos", job_type="process_photo_job", outcome="finished")
    assert finished == photos_queue["finished"] == 12
    assert value(figures, "snapmatch_job_duration_seconds_count", queue="photos", job_type="process_photo_job") == 12
    assert value(figures, "snapmatch_queue_jobs", queue="photos", state="finished") == photos_queue["finished"]
    assert value(figures, "snapmatch_queue_jobs", queue="photos", state="queued") == photos_queue["queued"] == 0
    assert value(figures, "snapmatch_workers") == stats["totals"]["workers"] == 2
    # Worker horses write their worker's files: one counter file per process, not one per job.
    counter_files = list((tmp_path / "prom").glob("counter_*.db"))
    assert 1 <= len(counter_files) <= 4, counter_files
