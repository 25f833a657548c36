"""The analysis rows: every write is a compare-and-set on the row's status (or generation), so a re-run, a late
batch result or two workers never write a photo's analysis twice, and its cost is recorded with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.functions import coalesce

from snapmatch import db
from snapmatch.analysis import PROVIDER
from snapmatch.analysis.quota import token_operations
from snapmatch.costs import CostTracker
from snapmatch.schema import AnalysisMode, AnalysisStatus, PhotoStatus, events, photo_analyses, photo_numbers, photos

if TYPE_CHECKING:  # the web app reads analyses without loading the google-genai SDK
    from snapmatch.analysis.gemini import Analysis

# Rows claimed for a batch carry this until Gemini names the batch; a crash in between leaves it behind.
SUBMITTING_PREFIX = "submitting:"
SUBMITTING_STALE_SECONDS = 600


def photo_for_analysis(photo_id: int) -> Row | None:
    """The photo's event and the event's analysis mode, when the photo's faces are done."""
    with db.connection() as conn:
        return conn.execute(
            select(photos.c.event_id, events.c.analysis_mode)
            .join(events, events.c.id == photos.c.event_id)
            .where(photos.c.id == photo_id, photos.c.status == PhotoStatus.DONE.value)
        ).first()


def create_pending(photo_id: int, event_id: int, mode: AnalysisMode) -> bool:
    """The photo's analysis row, pending; False when it already had one (a re-run of the photo job)."""
    now = db.utcnow()
    try:
        with db.transaction() as conn:
            conn.execute(
                insert(photo_analyses).values(
                    photo_id=photo_id,
                    event_id=event_id,
                    status=AnalysisStatus.PENDING.value,
                    mode=mode.value,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


def get(photo_id: int) -> Row | None:
    with db.connection() as conn:
        return conn.execute(select(photo_analyses).where(photo_analyses.c.photo_id == photo_id)).first()


@dataclass(frozen=True)
class Attempt:
    """What an analysis attempt needs: the photo's working copy, its upload batch (progress), its budget start."""

    photo_id: int
    event_id: int
    working_key: str | None
    batch_id: str | None
    first_started_at: float  # unix seconds


def start(photo_id: int, generation: int) -> Attempt | None:
    """Mark an attempt of a pending analysis and return it with the photo's working copy and batch;
    None when there is nothing to do (gone, finished, or this job is a stale generation)."""
    with db.transaction() as conn:
        row = conn.execute(
            select(
                photo_analyses.c.photo_id,
                photo_analyses.c.event_id,
                photo_analyses.c.status,
                photo_analyses.c.enqueue_count,
                photo_analyses.c.first_started_at,
                photos.c.working_key,
                photos.c.batch_id,
            )
            .join(photos, photos.c.id == photo_analyses.c.photo_id)
            .where(photo_analyses.c.photo_id == photo_id)
        ).first()
        if row is None or row.status != AnalysisStatus.PENDING.value or row.enqueue_count != generation:
            return None
        now = db.utcnow()
        conn.execute(
            update(photo_analyses)
            .where(photo_analyses.c.photo_id == photo_id)
            .values(
                attempts=photo_analyses.c.attempts + 1,
                first_started_at=coalesce(photo_analyses.c.first_started_at, now),
                updated_at=now,
            )
        )
    first = row.first_started_at or now
    first = first if first.tzinfo is not None else first.replace(tzinfo=UTC)
    return Attempt(row.photo_id, row.event_id, row.working_key, row.batch_id, first.timestamp())


def claim_next_generation(photo_id: int, generation: int) -> bool:
    """Move a pending analysis to its next job generation if it is still at ``generation`` (compare-and-set)."""
    with db.transaction() as conn:
        return bool(
            conn.execute(
                update(photo_analyses)
                .where(
                    photo_analyses.c.photo_id == photo_id,
                    photo_analyses.c.enqueue_count == generation,
                    photo_analyses.c.status == AnalysisStatus.PENDING.value,
                )
                .values(enqueue_count=generation + 1, updated_at=db.utcnow())
            ).rowcount
        )


def save_done(photo_id: int, analysis: Analysis, costs: CostTracker, *, batch: bool) -> bool:
    """Store the description, its numbers and its cost in one transaction; False if it was already finished."""
    desc = analysis.description
    now = db.utcnow()
    with db.transaction() as conn:
        event_id = conn.execute(
            select(photo_analyses.c.event_id).where(
                photo_analyses.c.photo_id == photo_id, photo_analyses.c.status == AnalysisStatus.PENDING.value
            )
        ).scalar()
        if event_id is None:
            return False
        updated = conn.execute(
            update(photo_analyses)
            .where(photo_analyses.c.photo_id == photo_id, photo_analyses.c.status == AnalysisStatus.PENDING.value)
            .values(
                status=AnalysisStatus.DONE.value,
                caption=desc.caption,
                tags=json.dumps(desc.tags),
                numbers=json.dumps(desc.numbers),
                visible_text=json.dumps(desc.visible_text),
                people_count=desc.people_count,
                blurry=desc.blurry,
                eyes_closed=desc.eyes_closed,
                overexposed=desc.overexposed,
                underexposed=desc.underexposed,
                search_text=desc.search_text(),
                tokens_in=analysis.tokens_in,
                tokens_out=analysis.tokens_out,
                error_code=None,
                error_message=None,
                finished_at=now,
                updated_at=now,
            )
        ).rowcount
        if not updated:
            return False
        conn.execute(delete(photo_numbers).where(photo_numbers.c.photo_id == photo_id))
        if desc.numbers:
            conn.execute(
                insert(photo_numbers),
                [{"photo_id": photo_id, "event_id": event_id, "number": n} for n in desc.numbers],
            )
        op_in, op_out = token_operations(batch)
        costs.record_call(PROVIDER, "generateContent" if not batch else "batchRequest", event_id, 1, conn=conn)
        costs.record_call(PROVIDER, op_in, event_id, analysis.tokens_in, conn=conn)
        costs.record_call(PROVIDER, op_out, event_id, analysis.tokens_out, conn=conn)
    return True


def finish(photo_id: int, status: AnalysisStatus, code: str, message: str) -> bool:
    """End a pending analysis without a description (quota_exceeded or failed, with a code)."""
    now = db.utcnow()
    with db.transaction() as conn:
        return bool(
            conn.execute(
                update(photo_analyses)
                .where(photo_analyses.c.photo_id == photo_id, photo_analyses.c.status == AnalysisStatus.PENDING.value)
                .values(status=status.value, error_code=code, error_message=message, finished_at=now, updated_at=now)
            ).rowcount
        )


def as_api(row: Row | None) -> dict[str, Any] | None:
    """The ``analysis`` object of ``GET /api/photos/<id>``."""
    if row is None:
        return None
    out: dict[str, Any] = {"status": row.status, "mode": row.mode}
    if row.status == AnalysisStatus.DONE.value:
        out.update(
            caption=row.caption,
            tags=json.loads(row.tags or "[]"),
            bib_numbers=json.loads(row.numbers or "[]"),
            visible_text=json.loads(row.visible_text or "[]"),
            people_count=row.people_count,
            quality={
                "blurry": bool(row.blurry),
                "eyes_closed": bool(row.eyes_closed),
                "overexposed": bool(row.overexposed),
                "underexposed": bool(row.underexposed),
            },
            tokens={"input": row.tokens_in, "output": row.tokens_out},
        )
    if row.error_code:
        out["error"] = {"code": row.error_code, "message": row.error_message}
    return out


# -- batch mode ------------------------------------------------------------------------------------------------


def waiting_for_batch(limit: int) -> list[Row]:
    """Pending batch-mode analyses not yet in a batch, oldest first, with their working copies."""
    with db.connection() as conn:
        return conn.execute(
            select(photo_analyses.c.photo_id, photo_analyses.c.created_at, photos.c.working_key)
            .join(photos, photos.c.id == photo_analyses.c.photo_id)
            .where(
                photo_analyses.c.mode == AnalysisMode.BATCH.value,
                photo_analyses.c.status == AnalysisStatus.PENDING.value,
                photo_analyses.c.batch_name.is_(None),
            )
            .order_by(photo_analyses.c.created_at, photo_analyses.c.photo_id)
            .limit(limit)
        ).all()


def claim_for_batch(photo_ids: list[int], placeholder: str) -> list[int]:
    """Mark waiting rows as being submitted (compare-and-set: a concurrent submitter gets none of them)."""
    with db.transaction() as conn:
        conn.execute(
            update(photo_analyses)
            .where(
                photo_analyses.c.photo_id.in_(photo_ids),
                photo_analyses.c.batch_name.is_(None),
                photo_analyses.c.status == AnalysisStatus.PENDING.value,
            )
            .values(batch_name=placeholder, submitted_at=db.utcnow(), updated_at=db.utcnow())
        )
        return list(
            conn.execute(select(photo_analyses.c.photo_id).where(photo_analyses.c.batch_name == placeholder)).scalars()
        )


def rename_batch(old: str, new: str | None) -> int:
    """Give claimed rows their batch's real name, or put them back in the waiting line (``new`` None)."""
    with db.transaction() as conn:
        return conn.execute(
            update(photo_analyses)
            .where(photo_analyses.c.batch_name == old, photo_analyses.c.status == AnalysisStatus.PENDING.value)
            .values(batch_name=new, submitted_at=db.utcnow() if new else None, updated_at=db.utcnow())
        ).rowcount


def release_stale_claims(now: datetime | None = None) -> int:
    """Rows left claimed by a submitter that died before Gemini named the batch go back to the waiting line."""
    cutoff = (now or db.utcnow()) - timedelta(seconds=SUBMITTING_STALE_SECONDS)
    with db.transaction() as conn:
        return conn.execute(
            update(photo_analyses)
            .where(
                photo_analyses.c.batch_name.like(SUBMITTING_PREFIX + "%"),
                photo_analyses.c.status == AnalysisStatus.PENDING.value,
                photo_analyses.c.submitted_at < cutoff,
            )
            .values(batch_name=None, submitted_at=None, updated_at=db.utcnow())
        ).rowcount


def pending_batches() -> list[dict[str, Any]]:
    """Submitted batches still waiting for results: name, photos, oldest submission."""
    with db.connection() as conn:
        rows = conn.execute(
            select(
                photo_analyses.c.batch_name,
                func.count(),
                func.min(photo_analyses.c.submitted_at),
            )
            .where(
                and_(
                    photo_analyses.c.batch_name.is_not(None),
                    photo_analyses.c.status == AnalysisStatus.PENDING.value,
                )
            )
            .group_by(photo_analyses.c.batch_name)
            .order_by(func.min(photo_analyses.c.submitted_at))
        ).all()
    return [{"name": name, "photos": n, "submitted_at": submitted} for name, n, submitted in rows]


def count_by_status() -> dict[str, int]:
    with db.connection() as conn:
        return dict(conn.execute(select(photo_analyses.c.status, func.count()).group_by(photo_analyses.c.status)).all())


def requeue_unanswered(name: str, answered: set[int], state: str, max_rounds: int) -> int:
    """Photos of a finished batch job that got no answer (the job failed, expired or was cancelled) go back to
    the waiting line for another batch, or end failed after ``max_rounds`` batches."""
    with db.connection() as conn:
        left = conn.execute(
            select(photo_analyses.c.photo_id, photo_analyses.c.enqueue_count).where(
                photo_analyses.c.batch_name == name, photo_analyses.c.status == AnalysisStatus.PENDING.value
            )
        ).all()
    requeued = 0
    for photo_id, rounds in left:
        if photo_id in answered:
            continue
        if rounds + 1 >= max_rounds:
            finish(photo_id, AnalysisStatus.FAILED, "gemini_batch_failed", f"Gemini's batch job ended {state}.")
            continue
        with db.transaction() as conn:
            requeued += conn.execute(
                update(photo_analyses)
                .where(
                    photo_analyses.c.photo_id == photo_id,
                    photo_analyses.c.batch_name == name,
                    photo_analyses.c.enqueue_count == rounds,
                    photo_analyses.c.status == AnalysisStatus.PENDING.value,
                )
                .values(batch_name=None, submitted_at=None, enqueue_count=rounds + 1, updated_at=db.utcnow())
            ).rowcount
    return requeued


def upload_batch_id(photo_id: int) -> str | None:
    with db.connection() as conn:
        return conn.execute(select(photos.c.batch_id).where(photos.c.id == photo_id)).scalar()
