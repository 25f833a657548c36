"""Photo analysis: a structured description of each photo (caption, tags, bib numbers, quality) from Gemini,
stored per photo and searchable. Optional: on when GEMINI_API_KEY is set."""

from __future__ import annotations

from snapmatch.schema import AnalysisMode
from snapmatch.settings import Settings

PROVIDER = "gemini"


def analysis_enabled(settings: Settings) -> bool:
    return bool(settings.GEMINI_API_KEY)


def effective_mode(event_mode: str | None, settings: Settings) -> AnalysisMode:
    """The event's own mode when it has one, else ANALYSIS_MODE (anything unknown means immediate)."""
    for candidate in (event_mode, settings.ANALYSIS_MODE):
        if candidate in (AnalysisMode.IMMEDIATE.value, AnalysisMode.BATCH.value):
            return AnalysisMode(candidate)
    return AnalysisMode.IMMEDIATE
