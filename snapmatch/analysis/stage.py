"""The analysis stage, independent of RQ: analyse one photo now (immediate mode), or collect photos into
Gemini Batch API jobs and apply their results (batch mode). Job functions in ``jobs/analysis.py`` call these."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from redis import Redis, RedisError

from snapmatch import progress
from snapmatch.analysis import analysis_enabled, effective_mode, records
from snapmatch.analysis.gemini import Analysis, GeminiAnalyzer, GeminiRejected, GeminiUnavailable, WaitLog
from snapmatch.errors import QuotaExceeded, RetryLater, SnapmatchError
from snapmatch.progress import Stage
from snapmatch.redis_client import key
from snapmatch.schema import AnalysisMode, AnalysisStatus
from snapmatch.settings import Settings
from snapmatch.storage import Storage

log = logging.getLogger(__name__)
QUOTA_WARNING = "gemini-quota-exceeded"
# After this many failed batch jobs a photo's analysis ends failed instead of going back in the line.
MAX_BATCH_ROUNDS = 3


class Outcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # gone, finished already, or a stale job generation
    QUOTA_EXCEEDED = "quota_exceeded"
    FAILED = "failed"


def queue_analysis(photo_id: int, settings: Settings) -> AnalysisMode | None:
    """Record that a photo whose faces are done waits for its analysis. The mode tells the caller whether to
    enqueue a job now (immediate) or leave it to the batch submitter; None when analysis is off, the photo is not
    done, or its analysis row already existed (a re-run)."""
    if not analysis_enabled(settings):
        return None
    photo = records.photo_for_analysis(photo_id)
    if photo is None:
        return None
    mode = effective_mode(photo.analysis_mode, settings)
    return mode if records.create_pending(photo_id, photo.event_id, mode) else None


def publish_quota_warning(redis: Redis, batch_id: str | None, photo_id: int, delay: float) -> None:
    """One ``gemini-quota-exceeded`` warning per upload batch per cooldown, not one per throttled call."""
    if not batch_id:
        return
    try:
        if redis.set(key("analysis", "quota-warned", batch_id), "1", nx=True, px=max(1, int(delay * 1000))):
            progress.publish(
                redis, batch_id, Stage.ANALYSIS_WARNING, photo_id, warning=QUOTA_WARNING, retryAfter=round(delay, 3)
            )
    except RedisError as exc:
        log.warning("quota warning for batch %s not published: %s", batch_id, exc)


def _finish(redis: Redis, batch_id: str | None, photo_id: int, status: AnalysisStatus, exc: SnapmatchError) -> None:
    if records.finish(photo_id, status, exc.code, exc.message):
        progress.publish(
            redis, batch_id, Stage.ANALYSIS_FAILED, photo_id, status=status.value, error={"code": exc.code}
        )


def analyze_photo(
    photo_id: int,
    generation: int,
    *,
    analyzer: GeminiAnalyzer,
    storage: Storage,
    redis: Redis,
    waits: WaitLog | None = None,
) -> Outcome:
    """Describe the photo's working copy with Gemini and store the answer.

    Raises ``RetryLater`` when the next attempt is too far away to wait for in a worker (the job reschedules);
    raises ``GeminiUnavailable`` when Gemini keeps failing (the job's retries take over).
    """
    row = records.start(photo_id, generation)
    if row is None or row.working_key is None:
        return Outcome.SKIPPED
    deadline = analyzer.deadline_from(row.first_started_at)
    try:
        analysis = analyzer.describe(
            storage.get(row.working_key),
            event_id=row.event_id,
            deadline=deadline,
            on_throttle=lambda delay: publish_quota_warning(redis, row.batch_id, photo_id, delay),
            waits=waits,
        )
    except RetryLater:
        raise  # not an ending: the job reschedules itself
    except QuotaExceeded as exc:  # the time budget or the event's spending cap
        _finish(redis, row.batch_id, photo_id, AnalysisStatus.QUOTA_EXCEEDED, exc)
        return Outcome.QUOTA_EXCEEDED
    except GeminiUnavailable as exc:
        if time.time() < deadline:
            raise  # the job's retries (with their backoff) take over
        _finish(redis, row.batch_id, photo_id, AnalysisStatus.FAILED, exc)
        return Outcome.FAILED
    except SnapmatchError as exc:  # GeminiRejected, UnreadableAnswer: retrying will not help
        _finish(redis, row.batch_id, photo_id, AnalysisStatus.FAILED, exc)
        return Outcome.FAILED
    _store(redis, row.batch_id, photo_id, analysis, analyzer, batch=False)
    return Outcome.DONE


def _store(
    redis: Redis, batch_id: str | None, photo_id: int, analysis: Analysis, analyzer: GeminiAnalyzer, *, batch: bool
) -> None:
    if records.save_done(photo_id, analysis, analyzer.costs, batch=batch):
        progress.publish(
            redis,
            batch_id,
            Stage.ANALYSIS_DONE,
            photo_id,
            tags=analysis.description.tags,
            bibNumbers=analysis.description.numbers,
        )


def fail_analysis(photo_id: int, code: str, message: str) -> None:
    """The analysis job failed on every attempt: end the analysis with the reason (the photo stays done)."""
    records.finish(photo_id, AnalysisStatus.FAILED, code, message)


# -- batch mode --------------------------------------------------------------------------------------------------


def should_submit_batch(waiting: int, oldest_age_seconds: float, max_requests: int, max_wait_seconds: float) -> bool:
    """Send a batch when it is full, or when its oldest photo has waited long enough."""
    return waiting > 0 and (waiting >= max_requests or oldest_age_seconds >= max_wait_seconds)


def submit_waiting(*, analyzer: GeminiAnalyzer, storage: Storage, settings: Settings, now: datetime) -> list[str]:
    """Submit the photos waiting for batch analysis as Batch API jobs (as many as are due); returns their names."""
    records.release_stale_claims(now)
    names: list[str] = []
    while True:
        waiting = records.waiting_for_batch(settings.ANALYSIS_BATCH_MAX_REQUESTS)
        if not waiting:
            return names
        oldest_age = (now - _aware(waiting[0].created_at)).total_seconds()
        if not should_submit_batch(
            len(waiting), oldest_age, settings.ANALYSIS_BATCH_MAX_REQUESTS, settings.ANALYSIS_BATCH_MAX_WAIT_SECONDS
        ):
            return names
        items: list[tuple[int, bytes]] = []
        size = 0
        for row in waiting:
            if row.working_key is None:
                continue
            data = storage.get(row.working_key)
            if items and size + len(data) * 4 // 3 > settings.ANALYSIS_BATCH_MAX_BYTES:
                break  # base64 grows the bytes by a third; the rest goes in the next batch
            items.append((row.photo_id, data))
            size += len(data) * 4 // 3
        placeholder = f"{records.SUBMITTING_PREFIX}{uuid.uuid4().hex}"
        claimed = set(records.claim_for_batch([pid for pid, _ in items], placeholder))
        items = [(pid, data) for pid, data in items if pid in claimed]
        if not items:
            return names
        try:
            name = analyzer.submit_batch(items, display_name=f"snapmatch-{placeholder.split(':', 1)[1][:12]}")
        except BaseException:
            records.rename_batch(placeholder, None)
            raise
        records.rename_batch(placeholder, name)
        names.append(name)
        log.info("analysis batch %s submitted with %d photos", name, len(items))


def poll_batches(*, analyzer: GeminiAnalyzer, redis: Redis) -> dict[str, int]:
    """Apply the results of every finished batch job; failed jobs send their photos back to the waiting line."""
    applied = 0
    requeued = 0
    for batch in records.pending_batches():
        name = batch["name"]
        if name.startswith(records.SUBMITTING_PREFIX):
            continue
        try:
            state = analyzer.batch_state(name)
        except GeminiRejected as exc:
            if exc.code != "gemini_not_found":
                raise
            # Gemini no longer knows the job (deleted, or past its retention): its photos go back to the line.
            requeued += records.requeue_unanswered(name, set(), "unknown to Gemini", MAX_BATCH_ROUNDS)
            continue
        except (RetryLater, QuotaExceeded, GeminiUnavailable) as exc:
            log.info("analysis batch %s not polled now: %s", name, exc)
            break  # the limiter or Gemini says wait: the next poll tries again
        if not state.finished:
            continue
        answered: set[int] = set()
        for result in state.results:
            answered.add(result.photo_id)
            photo = records.get(result.photo_id)
            if photo is None or photo.batch_name != name:
                continue
            batch_id = records.upload_batch_id(result.photo_id)
            if result.analysis is not None:
                _store(redis, batch_id, result.photo_id, result.analysis, analyzer, batch=True)
                applied += 1
            else:
                error = SnapmatchError(result.error_message or "Gemini could not describe this photo.")
                error.code = result.error_code or "gemini_batch_item_failed"
                _finish(redis, batch_id, result.photo_id, AnalysisStatus.FAILED, error)
        # Photos the job did not answer (it failed, expired or was cancelled) wait for the next batch.
        requeued += records.requeue_unanswered(name, answered, state.state, MAX_BATCH_ROUNDS)
    return {"applied": applied, "requeued": requeued}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
