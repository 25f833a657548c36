"""``GET /metrics``: Prometheus text for every web and worker process of this machine (multiprocess
files) plus the queue, worker and cache figures read from Redis at scrape time (``jobs.monitor``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jobs import monitor
from snapmatch import cache, metrics
from webapp.auth import current_user
from webapp.services import redis, settings

bp = Blueprint("metrics", __name__)
LOOPBACK = {"127.0.0.1", "::1"}


def count_uploads(statuses: Iterable[str]) -> None:
    """Uploaded files by outcome: queued counts as accepted."""
    for status in statuses:
        metrics.UPLOADS.labels("accepted" if status == "queued" else status).inc()


class RedisFigures(Collector):
    """Queue depth by state, workers, busy workers and cache hits, as the admin API reports them."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = monitor.queue_stats(redis())
        jobs = GaugeMetricFamily(
            "snapmatch_queue_jobs", "Jobs per queue and state (RQ registries)", labels=["queue", "state"]
        )
        workers = GaugeMetricFamily("snapmatch_queue_workers", "Workers listening to the queue", labels=["queue"])
        busy = GaugeMetricFamily(
            "snapmatch_queue_busy_workers", "Busy workers listening to the queue", labels=["queue"]
        )
        paused = GaugeMetricFamily("snapmatch_queue_paused", "1 when the queue is paused", labels=["queue"])
        oldest = GaugeMetricFamily(
            "snapmatch_queue_oldest_waiting_seconds", "Age of the oldest waiting job", labels=["queue"]
        )
        for name, q in stats["queues"].items():
            for state in ("queued", "started", "failed", "scheduled", "deferred", "finished"):
                jobs.add_metric([name, state], q[state])
            workers.add_metric([name], q["workers"])
            busy.add_metric([name], q["busy_workers"])
            paused.add_metric([name], 1 if q["paused"] else 0)
            oldest.add_metric([name], q["oldest_waiting_seconds"] or 0)
        yield from (jobs, workers, busy, paused, oldest)
        yield GaugeMetricFamily("snapmatch_workers", "Registered RQ workers", value=stats["totals"]["workers"])
        hits = GaugeMetricFamily("snapmatch_cache_hits", "Cache hits since the last clear", labels=["cache"])
        misses = GaugeMetricFamily("snapmatch_cache_misses", "Cache misses since the last clear", labels=["cache"])
        for name, figures in cache.stats(redis()).items():
            hits.add_metric([name], figures["hits"])
            misses.add_metric([name], figures["misses"])
        yield from (hits, misses)


def _allowed() -> bool:
    if (
        settings().METRICS_LOOPBACK_OPEN
        and request.remote_addr in LOOPBACK
        and not request.headers.get("Authorization")
    ):
        return True
    user = current_user()
    return user is not None and user.is_admin


@bp.get("/metrics")
def metrics_text():  # type: ignore[no-untyped-def]
    if not _allowed():
        from webapp.errors import api_error

        return api_error(403, "forbidden", "Metrics are for admins (Bearer token) or from this machine.")
    metrics.mark_dead_gauges()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics.MULTIPROC_DIR)
    registry.register(RedisFigures())
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
