"""What the admin sees of photo analysis: whether it is on, analyses by status, Gemini batch jobs still pending
and how long they have waited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from snapmatch.analysis import analysis_enabled, records
from snapmatch.settings import Settings


def _age_seconds(now: datetime, then: datetime | None) -> float | None:
    if then is None:
        return None
    then = then if then.tzinfo is not None else then.replace(tzinfo=UTC)
    return round((now - then).total_seconds(), 1)


def analysis_overview(settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "enabled": analysis_enabled(settings),
        "mode": settings.ANALYSIS_MODE,
        "model": settings.GEMINI_MODEL,
        "by_status": records.count_by_status(),
        "pending_batches": [
            {
                # Claimed rows waiting for Gemini to name their batch show as "submitting".
                "state": "submitting" if batch["name"].startswith(records.SUBMITTING_PREFIX) else "submitted",
                "name": batch["name"],
                "photos": batch["photos"],
                "submitted_at": batch["submitted_at"].isoformat() if batch["submitted_at"] else None,
                "age_seconds": _age_seconds(now, batch["submitted_at"]),
            }
            for batch in records.pending_batches()
        ],
    }
