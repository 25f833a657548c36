"""The relational schema (SQLAlchemy Core): the source of truth for every photo, face and match.

Migrations in ``snapmatch/migrations`` build exactly this; a test compares the two.
"""

from __future__ import annotations

from enum import StrEnum

# Registers PostgreSQL's to_tsvector() types before the search index below is built: without it the
# index compiles only if some other module happened to import the dialect first.
import sqlalchemy.dialects.postgresql  # noqa: F401
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Role(StrEnum):
    ADMIN = "admin"
    PHOTOGRAPHER = "photographer"
    ATTENDEE = "attendee"


class PhotoStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    # A paid provider's time budget or the event's spending cap ran out: the photo waits, with a reason.
    QUOTA_EXCEEDED = "quota_exceeded"


class SelfieStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    NO_FACE = "no_face"
    FAILED = "failed"


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # [area: security, issue 13] token names, a shown prefix, expiry and last use (migration 0004)
    Column("name", String(100)),
    # The first characters of the token (never enough to use it), so a person can tell tokens apart.
    Column("prefix", String(16), index=True),
    Column("expires_at", DateTime(timezone=True)),
    # Written at most once a minute per token (see accounts.LAST_USED_RESOLUTION_SECONDS).
    Column("last_used_at", DateTime(timezone=True)),
    # [/area: security]
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("owner_id", Id, ForeignKey("users.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("access_code", String(32), nullable=False),
    # Bumped inside every transaction that writes faces or selfie matches: it serialises
    # matching per event (row lock) so a photo and a selfie committed together never miss each other.
    Column("match_version", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

event_members = Table(
    "event_members",
    metadata,
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("owner_id", Id, ForeignKey("users.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

photos = Table(
    "photos",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("batch_id", String(64), ForeignKey("batches.id", ondelete="SET NULL"), nullable=True, index=True),
    Column("sha256", String(64), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(40), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("original_key", String(255), nullable=False),
    Column("thumbnail_key", String(255)),
    Column("working_key", String(255)),
    Column("status", String(20), nullable=False),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("worker_name", String(120)),
    Column("enqueue_count", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("face_count", Integer),
    Column("sharpness", Float),
    Column("exposure", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    # Set once, by the first attempt: the start of the photo's provider time budget across reschedules.
    Column("first_started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("event_id", "sha256", name="uq_photos_event_sha256"),
    Index("ix_photos_event_status", "event_id", "status"),
    Index("ix_photos_status_updated", "status", "updated_at"),
)

faces = Table(
    "faces",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("face_index", Integer, nullable=False),
    Column("left", Integer, nullable=False),
    Column("top", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("score", Float, nullable=False),
    # Local engine: the 128-d descriptor. Collection engines (Rekognition) keep vectors themselves:
    # empty here, and provider_face_id names the face in the provider's collection.
    Column("embedding", LargeBinary, nullable=False),
    Column("provider_face_id", String(64), index=True),
    UniqueConstraint("photo_id", "face_index", name="uq_faces_photo_index"),
)

selfies = Table(
    "selfies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("image_key", String(255), nullable=False),
    Column("status", String(20), nullable=False),
    Column("embedding", LargeBinary),
    Column("provider_face_id", String(64)),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("worker_name", String(120)),
    Column("enqueue_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("event_id", "user_id", name="uq_selfies_event_user"),
    Index("ix_selfies_status_updated", "status", "updated_at"),
)

matches = Table(
    "matches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("selfie_id", Id, ForeignKey("selfies.id", ondelete="CASCADE"), nullable=False),
    Column("face_id", Id, ForeignKey("faces.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("distance", Float, nullable=False),
    # Which rule made the face theirs (matching_rule.Basis); "centre" ones are never evidence.
    Column("basis", String(8), nullable=True),
    UniqueConstraint("selfie_id", "face_id", name="uq_matches_selfie_face"),
    Index("ix_matches_selfie_photo", "selfie_id", "photo_id"),
)

# Billable provider usage: the database keeps what was spent, so a Redis flush cannot reset a budget.
provider_usage = Table(
    "provider_usage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("event_id", Id, index=True),
    Column("units", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_provider_usage_provider_event", "provider", "event_id"),
)


# ---- new tables by area: each area adds its tables between its own markers (merge-friendly) ----
# [area: security, issue 13] add below this line
# One row per signed-in browser session (Flask-Login's cookie names it by a random secret, stored
# here only as its SHA-256): signing out deletes the row, so a copied cookie dies with it.
user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
# [/area: security]

# [area: robustness, issue 13] add below this line
# Generations started on purpose (a provider asked us to wait, a selfie was replaced), as opposed to
# re-enqueues after a crash: the sweeper's cap on crashes counts enqueue_count - planned_generations.
photos.append_column(Column("planned_generations", Integer, nullable=False, server_default="0"))
selfies.append_column(Column("planned_generations", Integer, nullable=False, server_default="0"))

# Deletions owed ("delete my face data", a replaced selfie): a provider face or a stored image per
# row, written in the transaction that forgets the selfie so that neither a Redis outage nor a
# storage error loses them; done after the commit, retried by the sweeper (snapmatch/deletions.py).
pending_deletions = Table(
    "pending_deletions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, index=True),
    Column("provider_face_id", String(64)),
    Column("storage_key", String(255), index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
# [/area: robustness]


# [area: matching, issue 14] add below this line
class CorrectionVerdict(StrEnum):
    NOT_ME = "not_me"
    IS_ME = "is_me"


# Which group (connected faces of one person, see snapmatch.matching_rule) each local face is in.
face_groups = Table(
    "face_groups",
    metadata,
    Column("face_id", Id, ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", Id, nullable=False),
    Index("ix_face_groups_event_group", "event_id", "group_id"),
)

# Borderline matches: offered under "maybe", never shown as the attendee's until confirmed.
maybe_matches = Table(
    "maybe_matches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("selfie_id", Id, ForeignKey("selfies.id", ondelete="CASCADE"), nullable=False),
    Column("face_id", Id, ForeignKey("faces.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("distance", Float, nullable=False),
    UniqueConstraint("selfie_id", "face_id", name="uq_maybe_matches_selfie_face"),
    Index("ix_maybe_matches_selfie_photo", "selfie_id", "photo_id"),
)

# An attendee's word on a photo: kept by photo, so it outlives re-runs of the photo. ``embedding`` is
# the face they meant (evidence for or against similar faces); empty with a collection engine.
match_corrections = Table(
    "match_corrections",
    metadata,
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("verdict", String(10), nullable=False),
    Column("embedding", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_match_corrections_event_user", "event_id", "user_id"),
)

# Reference photos beyond the selfie (at most MAX_REFERENCE_PHOTOS - 1 per attendee and event).
selfie_references = Table(
    "selfie_references",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("selfie_id", Id, ForeignKey("selfies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("image_key", String(255), nullable=False),
    Column("status", String(20), nullable=False),
    Column("embedding", LargeBinary),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# [/area: matching]

# [area: analysis, issue 18] add below this line


class AnalysisStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    # Gemini's quota did not come back within GEMINI_TIMEOUT_SECONDS_TOTAL (or the event's budget is spent).
    QUOTA_EXCEEDED = "quota_exceeded"
    FAILED = "failed"


class AnalysisMode(StrEnum):
    IMMEDIATE = "immediate"  # one generateContent call per photo, right after its faces
    BATCH = "batch"  # collected into Gemini Batch API jobs: half the price, results within hours


# PostgreSQL text search configuration for photo search: English stemming ("runners" finds "runner").
SEARCH_TS_CONFIG = "english"

# Per-event analysis settings live on the event row; appended here so the events table above stays as it is.
# NULL analysis_mode: the ANALYSIS_MODE setting decides.
events.append_column(Column("analysis_mode", String(16)))

# One Gemini description per photo (absent when analysis is off). The photo's own status is about faces only.
photo_analyses = Table(
    "photo_analyses",
    metadata,
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("mode", String(16), nullable=False),
    # Job generation (analysis-<photo>-<n>), bumped by compare-and-set like photos.enqueue_count.
    Column("enqueue_count", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Start of the GEMINI_TIMEOUT_SECONDS_TOTAL budget, kept across reschedules.
    Column("first_started_at", DateTime(timezone=True)),
    # Batch mode: the Gemini batch job (batches/...) holding this photo's request, and when it was sent.
    Column("batch_name", String(128)),
    Column("submitted_at", DateTime(timezone=True)),
    Column("caption", Text),
    Column("tags", Text),  # JSON list of lower-case words or short phrases
    Column("numbers", Text),  # JSON list: bib and jersey numbers
    Column("visible_text", Text),  # JSON list: other text legible in the photo
    Column("people_count", Integer),
    Column("blurry", Boolean),
    Column("eyes_closed", Boolean),
    Column("overexposed", Boolean),
    Column("underexposed", Boolean),
    # Caption, tags and visible text in one column: what word search looks in.
    Column("search_text", Text),
    Column("tokens_in", Integer),
    Column("tokens_out", Integer),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_photo_analyses_event_status", "event_id", "status"),
    Index("ix_photo_analyses_status_updated", "status", "updated_at"),
    Index("ix_photo_analyses_batch_name", "batch_name"),
    # Full-text search on PostgreSQL; snapmatch.analysis.search filters with the same expression so the planner
    # uses it. Migration 0007 creates it on PostgreSQL only (SQLite has no to_tsvector and searches without).
    Index(
        "ix_photo_analyses_search",
        func.to_tsvector(
            literal_column(f"'{SEARCH_TS_CONFIG}'::regconfig"),
            func.coalesce(literal_column("search_text"), literal_column("''::text")),
        ),
        postgresql_using="gin",
    ),
)

# Bib / jersey numbers seen in a photo, one row each, so "which photos show 1234" is an index lookup.
photo_numbers = Table(
    "photo_numbers",
    metadata,
    Column("photo_id", Id, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("number", String(16), primary_key=True),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Index("ix_photo_numbers_event_number", "event_id", "number"),
)
# [/area: analysis]

# [area: operations, issue 16] add below this line
# [/area: operations]

# [area: pages, issue 15] add below this line
# [/area: pages]

# [area: watcher, issue 17] add below this line
# [/area: watcher]
