"""What Gemini is asked for and how its answer becomes stored values: the response schema, the prompt,
and pure functions that clean the answer (numbers, tags, words for search)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from snapmatch.errors import SnapmatchError

PROMPT = (
    "Describe this event photo for a photo search. caption: one factual sentence. tags: up to 10 short "
    "lower-case words or phrases for what is shown (objects, scene, activity, e.g. podium, cake, finish line). "
    "bib_numbers: every race bib or jersey number that is legible, digits only. visible_text: other legible "
    "text (signs, banners, shirts). people_count: people visible. Quality flags: blurry, eyes_closed (of the "
    "main subject), overexposed, underexposed."
)
MAX_TAGS = 20
MAX_NUMBERS = 20
MAX_TEXTS = 20
MAX_CAPTION = 500
NUMBER_PATTERN = re.compile(r"\d{1,10}")
WORD_PATTERN = re.compile(r"[^\W_]+", re.UNICODE)


class PhotoDescriptionSchema(BaseModel):
    """The response schema sent to Gemini (the SDK turns it into OpenAPI-style JSON schema)."""

    caption: str = Field(description="One factual sentence describing the photo.")
    tags: list[str] = Field(description="Short lower-case words or phrases for what is shown.")
    bib_numbers: list[str] = Field(description="Legible race bib or jersey numbers, digits only.")
    visible_text: list[str] = Field(description="Other legible text in the photo.")
    people_count: int = Field(description="Number of people visible.")
    blurry: bool
    eyes_closed: bool
    overexposed: bool
    underexposed: bool


class UnreadableAnswer(SnapmatchError):
    """Gemini answered, but not with a description we can use (blocked, truncated, not the schema)."""

    code = "analysis_unreadable"
    status = 502


@dataclass(frozen=True)
class Description:
    caption: str
    tags: list[str]
    numbers: list[str]
    visible_text: list[str]
    people_count: int
    blurry: bool
    eyes_closed: bool
    overexposed: bool
    underexposed: bool

    def search_text(self) -> str:
        """Caption, tags and visible text as lower-case words separated by single spaces: what word search
        looks in (full-text search on PostgreSQL, whole words elsewhere)."""
        return " ".join(search_words(" ".join([self.caption, *self.tags, *self.visible_text])))


def _unique(values: list[str], limit: int) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))[:limit]


def normalize_number(raw: str) -> str | None:
    """A bib as typed by a searcher: digits only, leading zeros kept ("007" is a different bib from "7")."""
    digits = "".join(NUMBER_PATTERN.findall(str(raw)))
    return digits[:16] or None


def parse_description(text: str | None) -> Description:
    """The model's JSON answer, validated against the schema and cleaned; ``UnreadableAnswer`` otherwise."""
    if not text:
        raise UnreadableAnswer("Gemini returned no description for this photo.")
    try:
        raw = PhotoDescriptionSchema.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise UnreadableAnswer("Gemini's description of this photo did not follow the schema.") from exc
    return Description(
        caption=raw.caption.strip()[:MAX_CAPTION],
        tags=_unique([t.strip().lower()[:60] for t in raw.tags], MAX_TAGS),
        numbers=_unique([n for n in (normalize_number(x) for x in raw.bib_numbers) if n], MAX_NUMBERS),
        visible_text=_unique([t.strip()[:200] for t in raw.visible_text], MAX_TEXTS),
        people_count=max(0, raw.people_count),
        blurry=raw.blurry,
        eyes_closed=raw.eyes_closed,
        overexposed=raw.overexposed,
        underexposed=raw.underexposed,
    )


def search_words(text: str) -> list[str]:
    """Lower-case words of a text, for the portable (non-PostgreSQL) word search."""
    return [w.lower() for w in WORD_PATTERN.findall(text)]
