"""One settings object, read from the environment with documented defaults.

Every process (web, worker, scheduler, CLI) builds its configuration here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _env_str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else default


VAR_DIR = Path(os.environ.get("SNAPMATCH_VAR_DIR", "./var"))


@dataclass(frozen=True)
class Settings:
    """Process configuration. Field names equal the environment variable names."""

    DATABASE_URL: str = field(default_factory=lambda: _env_str("DATABASE_URL", f"sqlite:///{VAR_DIR}/snapmatch.db"))
    REDIS_URL: str = field(default_factory=lambda: _env_str("REDIS_URL", "redis://localhost:6379/0"))
    # Prefix of every Redis key Snapmatch owns (RQ keeps its own "rq:" keys in the same DB).
    REDIS_PREFIX: str = field(default_factory=lambda: _env_str("REDIS_PREFIX", "snapmatch"))
    STORAGE_URL: str = field(default_factory=lambda: _env_str("STORAGE_URL", f"file://{VAR_DIR}/media"))
    S3_ENDPOINT_URL: str = field(default_factory=lambda: _env_str("S3_ENDPOINT_URL", ""))
    FACE_ENGINE: str = field(default_factory=lambda: _env_str("FACE_ENGINE", "local"))
    FACE_MATCH_THRESHOLD: float = field(default_factory=lambda: _env_float("FACE_MATCH_THRESHOLD", 0.6))
    # Smallest face (pixels wide in the original) the local engine commits to finding.
    FACE_MIN_SIZE: int = field(default_factory=lambda: _env_int("FACE_MIN_SIZE", 60))
    GEMINI_API_KEY: str = field(default_factory=lambda: _env_str("GEMINI_API_KEY", ""))
    GEMINI_MODEL: str = field(default_factory=lambda: _env_str("GEMINI_MODEL", "gemini-2.5-flash"))
    PHOTO_QUEUE_MAX_SIZE: int = field(default_factory=lambda: _env_int("PHOTO_QUEUE_MAX_SIZE", 10000))
    AWS_CONCURRENT_REQUESTS: int = field(default_factory=lambda: _env_int("AWS_CONCURRENT_REQUESTS", 5))
    AWS_REQUESTS_PER_SECOND: float = field(default_factory=lambda: _env_float("AWS_REQUESTS_PER_SECOND", 5.0))
    GEMINI_CONCURRENT_REQUESTS: int = field(default_factory=lambda: _env_int("GEMINI_CONCURRENT_REQUESTS", 4))
    GEMINI_REQUESTS_PER_MINUTE: float = field(default_factory=lambda: _env_float("GEMINI_REQUESTS_PER_MINUTE", 60.0))
    # Bucket sizes for the shared limiter; 0 means "one second's worth of rate" (at least 1).
    AWS_BURST: int = field(default_factory=lambda: _env_int("AWS_BURST", 0))
    GEMINI_BURST: int = field(default_factory=lambda: _env_int("GEMINI_BURST", 0))
    # A crashed process's provider slot comes back after this long.
    LIMITER_LEASE_SECONDS: float = field(default_factory=lambda: _env_float("LIMITER_LEASE_SECONDS", 60.0))
    # Consecutive provider failures that open the shared circuit breaker, and for how long.
    LIMITER_BREAKER_FAILURES: int = field(default_factory=lambda: _env_int("LIMITER_BREAKER_FAILURES", 5))
    LIMITER_BREAKER_SECONDS: float = field(default_factory=lambda: _env_float("LIMITER_BREAKER_SECONDS", 30.0))
    # Per-photo budget for waiting on AWS (same idea as GEMINI_TIMEOUT_SECONDS_TOTAL).
    AWS_TIMEOUT_SECONDS_TOTAL: int = field(default_factory=lambda: _env_int("AWS_TIMEOUT_SECONDS_TOTAL", 600))
    # Provider waits longer than this reschedule the job instead of holding a worker.
    AWS_MAX_INLINE_WAIT_SECONDS: float = field(default_factory=lambda: _env_float("AWS_MAX_INLINE_WAIT_SECONDS", 5.0))
    REKOGNITION_MATCH_SIMILARITY: float = field(
        default_factory=lambda: _env_float("REKOGNITION_MATCH_SIMILARITY", 80.0)
    )
    REKOGNITION_MAX_FACES: int = field(default_factory=lambda: _env_int("REKOGNITION_MAX_FACES", 100))
    REKOGNITION_QUALITY_FILTER: str = field(default_factory=lambda: _env_str("REKOGNITION_QUALITY_FILTER", "AUTO"))
    REKOGNITION_COLLECTION_PREFIX: str = field(
        default_factory=lambda: _env_str("REKOGNITION_COLLECTION_PREFIX", _env_str("REDIS_PREFIX", "snapmatch"))
    )
    REKOGNITION_PRICE_PER_IMAGE: float = field(default_factory=lambda: _env_float("REKOGNITION_PRICE_PER_IMAGE", 0.001))
    REKOGNITION_PRICE_PER_FACE_MONTH: float = field(
        default_factory=lambda: _env_float("REKOGNITION_PRICE_PER_FACE_MONTH", 0.00001)
    )
    # Spending cap per event in USD for paid providers; 0 = no cap.
    EVENT_BUDGET_USD: float = field(default_factory=lambda: _env_float("EVENT_BUDGET_USD", 0.0))
    GEMINI_TIMEOUT_SECONDS_TOTAL: int = field(default_factory=lambda: _env_int("GEMINI_TIMEOUT_SECONDS_TOTAL", 600))
    MAX_UPLOAD_MB: int = field(default_factory=lambda: _env_int("MAX_UPLOAD_MB", 50))
    MAX_IMAGE_PIXELS: int = field(default_factory=lambda: _env_int("MAX_IMAGE_PIXELS", 100_000_000))
    DB_POOL_SIZE: int = field(default_factory=lambda: _env_int("DB_POOL_SIZE", 5))
    DB_MAX_OVERFLOW: int = field(default_factory=lambda: _env_int("DB_MAX_OVERFLOW", 10))
    # Signs session cookies and CSRF tokens. No default: the web process refuses to start without a
    # strong one (webapp/secret_key.py); `make run` generates one into ./var/secret_key.
    SECRET_KEY: str = field(default_factory=lambda: _env_str("SECRET_KEY", ""))
    # Seconds a photo may sit in queued/processing with no live job before the sweeper re-enqueues it.
    SWEEP_GRACE_SECONDS: int = field(default_factory=lambda: _env_int("SWEEP_GRACE_SECONDS", 20))
    # Per-photo job timeout (RQ kills the work horse after this many seconds).
    PHOTO_JOB_TIMEOUT: int = field(default_factory=lambda: _env_int("PHOTO_JOB_TIMEOUT", 300))

    # ---- settings by area: each area adds its fields between its own markers (merge-friendly) ----
    # [area: security, issue 13] add below this line
    # Largest body a JSON route reads (checked from Content-Length before reading).
    JSON_MAX_BYTES: int = field(default_factory=lambda: _env_int("JSON_MAX_BYTES", 64 * 1024))
    # Sign-in attempts (POST /login, POST /api/tokens), flask-limiter syntax, counted in Redis.
    LOGIN_RATE_LIMIT_PER_IP: str = field(default_factory=lambda: _env_str("LOGIN_RATE_LIMIT_PER_IP", "10/minute"))
    LOGIN_RATE_LIMIT_PER_EMAIL: str = field(default_factory=lambda: _env_str("LOGIN_RATE_LIMIT_PER_EMAIL", "5/minute"))
    # Send the session cookie over HTTPS only (set to 1 in production behind TLS).
    SESSION_COOKIE_SECURE: bool = field(
        default_factory=lambda: _env_str("SESSION_COOKIE_SECURE", "0").lower() in ("1", "true", "yes", "on")
    )
    # How long a sign-in lasts.
    SESSION_LIFETIME_HOURS: int = field(default_factory=lambda: _env_int("SESSION_LIFETIME_HOURS", 168))
    # Reverse proxies in front of the web process that set X-Forwarded-For/-Proto/-Host (0 = none):
    # the client address (rate limits) and https (Secure cookies) are read from their headers.
    TRUSTED_PROXIES: int = field(default_factory=lambda: _env_int("TRUSTED_PROXIES", 0))
    # [/area: security]

    # [area: robustness, issue 13] add below this line
    # [/area: robustness]

    # [area: matching, issue 14] add below this line
    # Rekognition hits at or above this similarity are sure; those between REKOGNITION_MATCH_SIMILARITY
    # and it go to the attendee's "maybe" list.
    REKOGNITION_SURE_SIMILARITY: float = field(default_factory=lambda: _env_float("REKOGNITION_SURE_SIMILARITY", 90.0))
    # Reference photos per attendee and event (the selfie included).
    MAX_REFERENCE_PHOTOS: int = field(default_factory=lambda: _env_int("MAX_REFERENCE_PHOTOS", 3))
    # [/area: matching]

    # [area: analysis, issue 18] add below this line
    # Where the google-genai client sends requests (tests point it at a loopback fake); empty = Google's.
    GEMINI_BASE_URL: str = field(default_factory=lambda: _env_str("GEMINI_BASE_URL", ""))
    # "immediate" (one generateContent per photo, default) or "batch" (Gemini Batch API, half price, slower);
    # an event's own analysis_mode overrides it.
    ANALYSIS_MODE: str = field(default_factory=lambda: _env_str("ANALYSIS_MODE", "immediate"))
    # Analysis waits longer than this reschedule the analysis job instead of holding a worker.
    GEMINI_MAX_INLINE_WAIT_SECONDS: float = field(
        default_factory=lambda: _env_float("GEMINI_MAX_INLINE_WAIT_SECONDS", 2.0)
    )
    # Seconds one HTTP request to Gemini may take before it counts as a failure.
    GEMINI_REQUEST_TIMEOUT_SECONDS: float = field(
        default_factory=lambda: _env_float("GEMINI_REQUEST_TIMEOUT_SECONDS", 60.0)
    )
    # USD per million tokens (list prices of gemini-2.5-flash); Batch API requests cost half.
    GEMINI_PRICE_PER_MILLION_INPUT_TOKENS: float = field(
        default_factory=lambda: _env_float("GEMINI_PRICE_PER_MILLION_INPUT_TOKENS", 0.30)
    )
    GEMINI_PRICE_PER_MILLION_OUTPUT_TOKENS: float = field(
        default_factory=lambda: _env_float("GEMINI_PRICE_PER_MILLION_OUTPUT_TOKENS", 2.50)
    )
    # Batch mode: submit when this many photos wait, or when the oldest has waited this long.
    ANALYSIS_BATCH_MAX_REQUESTS: int = field(default_factory=lambda: _env_int("ANALYSIS_BATCH_MAX_REQUESTS", 100))
    ANALYSIS_BATCH_MAX_WAIT_SECONDS: float = field(
        default_factory=lambda: _env_float("ANALYSIS_BATCH_MAX_WAIT_SECONDS", 300.0)
    )
    # Inline batch requests are capped at 20 MB by the API; stay under it.
    ANALYSIS_BATCH_MAX_BYTES: int = field(default_factory=lambda: _env_int("ANALYSIS_BATCH_MAX_BYTES", 15_000_000))
    # How often the scheduler submits waiting batch requests and polls submitted batches.
    ANALYSIS_BATCH_POLL_SECONDS: int = field(default_factory=lambda: _env_int("ANALYSIS_BATCH_POLL_SECONDS", 60))
    # [/area: analysis]

    # [area: operations, issue 16] add below this line
    # /metrics answers without a token to requests from this machine (set 0 behind a local proxy).
    METRICS_LOOPBACK_OPEN: bool = field(default_factory=lambda: _env_str("METRICS_LOOPBACK_OPEN", "1") != "0")
    # Scheduled clean-up: temporary files, and finished job records / progress streams, older than this.
    TEMP_FILE_MAX_AGE_DAYS: float = field(default_factory=lambda: _env_float("TEMP_FILE_MAX_AGE_DAYS", 30.0))
    JOB_RECORD_MAX_AGE_DAYS: float = field(default_factory=lambda: _env_float("JOB_RECORD_MAX_AGE_DAYS", 90.0))
    SWEEP_INTERVAL_SECONDS: int = field(default_factory=lambda: _env_int("SWEEP_INTERVAL_SECONDS", 10))
    # HTTP rate limits (flask-limiter notation). Uploads count files, not requests (see README).
    UPLOAD_RATE_LIMIT: str = field(default_factory=lambda: _env_str("UPLOAD_RATE_LIMIT", "100/minute"))
    MY_PHOTOS_RATE_LIMIT: str = field(default_factory=lambda: _env_str("MY_PHOTOS_RATE_LIMIT", "60/minute"))
    # Worker processes lower their CPU priority by this much, so web requests on a shared machine
    # are answered first and the backlog takes the rest of the CPU (0 = same priority).
    WORKER_NICE: int = field(default_factory=lambda: _env_int("WORKER_NICE", 10))
    # [/area: operations]

    # [area: pages, issue 15] add below this line
    # [/area: pages]

    # [area: watcher, issue 17] add below this line
    # [/area: watcher]

    @property
    def max_upload_bytes(self) -> int:
        return self.MAX_UPLOAD_MB * 1024 * 1024

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
