"""Work horses write their worker's Prometheus files: sequential forks and the worker itself add up,
new series from each process survive, and one file per worker holds them (not one per job)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import os
    from prometheus_client import CollectorRegistry, multiprocess
    from snapmatch import metrics

    metrics.share_with_horses()
    metrics.JOBS.labels("photos", "job", "finished").inc()  # the worker writes first
    for i in range(6):
        pid = os.fork()
        if pid == 0:
            metrics.JOBS.labels("photos", "job", "finished").inc()
            metrics.LIMITER_WAITS.labels("p", f"reason-{i}").inc(i + 1)  # a new series per horse
            metrics.JOB_DURATION.labels("photos", "job").observe(0.3)
            os._exit(0)
        os.waitpid(pid, 0)
        metrics.horse_finished()
    metrics.JOBS.labels("photos", "job", "failed").inc()  # the worker writes after its horses
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in registry.collect() for s in f.samples}
    print(values[("snapmatch_jobs_total", (("job_type", "job"), ("outcome", "finished"), ("queue", "photos")))])
    print(values[("snapmatch_jobs_total", (("job_type", "job"), ("outcome", "failed"), ("queue", "photos")))])
    print(sum(v for (name, _l), v in values.items() if name == "snapmatch_limiter_waits_total"))
    print(values[("snapmatch_job_duration_seconds_count", (("job_type", "job"), ("queue", "photos")))])
    print(len([n for n in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]) if n.startswith("counter_")]))
    """
)


def test_horses_share_their_workers_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    finished, failed, waits, durations, files = out.stdout.split()
    assert float(finished) == 7 and float(failed) == 1
    assert float(waits) == sum(range(1, 7))
    assert float(durations) == 6
    assert int(files) == 1
