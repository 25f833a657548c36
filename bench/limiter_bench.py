"""Print the provider limiter's figures: try_acquire+release latency, and achieved rate under saturation.

Runs against REDIS_URL (default redis://127.0.0.1:6379/14) under a prefix of its own, deleted at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis

# Run as a plain script (`python bench/limiter_bench.py`), the project root is not on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snapmatch.limiter import Acquired, ProviderLimiter, ProviderLimits, RateLimitExceeded

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
LATENCY_CALLS = 5000
SATURATION_PROCESSES = 8
SATURATION_LIMITS = ProviderLimits(name="bench-saturation", rate=50.0, burst=1, concurrency=8)
SATURATION_SECONDS = 5.0
WARM_UP_SECONDS = 0.5


def bench_latency(client: redis.Redis, prefix: str) -> None:
    # Limits far above what one client can reach: every call is granted, so this is the uncontended cost.
    limits = ProviderLimits(name="bench-latency", rate=1e9, burst=1_000_000, concurrency=1000)
    limiter = ProviderLimiter(client, limits, prefix=prefix)
    for _ in range(200):  # load the scripts and warm the connection before timing
        result = limiter.try_acquire()
        assert isinstance(result, Acquired)
        limiter.release(result.lease_id, "success")
    samples = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        result = limiter.try_acquire()
        assert isinstance(result, Acquired), result
        limiter.release(result.lease_id, "success")
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(
        f"limiter acquire latency (try_acquire+release, uncontended, loopback): "
        f"p50={p50:.3f} ms p99={p99:.3f} ms max={samples[-1]:.3f} ms (n={len(samples)})"
    )


def saturate(prefix: str, start_at: float, stop_at: float) -> None:
    """Child process: acquire and release as fast as the limiter allows; grant times go to Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    limiter = ProviderLimiter(client, SATURATION_LIMITS, prefix=prefix)
    granted = []
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < stop_at:
        try:
            lease = limiter.acquire(timeout=stop_at - time.time())
        except RateLimitExceeded:
            break
        granted.append(lease.acquired_at)
        lease.release()
    if granted:
        client.rpush(f"{prefix}:granted", *granted)


def bench_saturation(client: redis.Redis, prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # time for the children to import before the clock starts
    stop_at = start_at + SATURATION_SECONDS
    args = (prefix, start_at, stop_at)
    children = [ctx.Process(target=saturate, args=args) for _ in range(SATURATION_PROCESSES)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    grants = sorted(float(raw) for raw in client.lrange(f"{prefix}:granted", 0, -1))
    # The warm-up drains the initial burst, which would otherwise inflate the rate; between the first and
    # last grant after it, (count - 1) intervals are pure refill.
    measured = [g for g in grants if g >= grants[0] + WARM_UP_SECONDS]
    achieved = (len(measured) - 1) / (measured[-1] - measured[0])
    rate = SATURATION_LIMITS.rate
    print(
        f"limiter accuracy under saturation: {SATURATION_PROCESSES} processes, rate={rate:g}/s "
        f"burst={SATURATION_LIMITS.burst} concurrency={SATURATION_LIMITS.concurrency}, "
        f"{len(grants)} grants in {SATURATION_SECONDS:g} s"
    )
    print(
        f"limiter achieved rate: {achieved:.2f}/s = {achieved / rate:.3f} of configured "
        f"(measured over {measured[-1] - measured[0]:.2f} s, {len(measured)} grants, "
        f"after a {WARM_UP_SECONDS:g} s warm-up that excludes the initial burst)"
    )


def main() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"bench-limiter-{uuid.uuid4().hex[:8]}"
    try:
        bench_latency(client, prefix)
        bench_saturation(client, prefix)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
