"""Print search latency over an event's analysed photos: bib number (exact), one word, two words, and an
attendee's search restricted to their matched photos; on PostgreSQL (full-text search) and SQLite (the
portable whole-word fallback). Rows are inserted directly (no Gemini), shaped like real analyses.

    python bench/analysis_search.py [PHOTOS]     (default 20000 in one event, plus 5000 in another)

PostgreSQL: TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres); a database of
its own is created and dropped.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, text  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORDS = [
    *("runner", "crowd", "finish", "line", "podium", "medal", "cake", "water", "station", "bicycle", "team"),
    *("jersey", "street", "park", "sunny", "rain", "smile", "family", "child", "dog", "flag", "banner"),
    *("start", "arch", "volunteer", "cheering", "sprint", "marathon", "trail", "bridge", "river"),
]
REPEAT = 30


def _populate(event_id: int, other_event_id: int, photos: int, attendee_id: int) -> None:
    from snapmatch import db
    from snapmatch.analysis.description import search_words
    from snapmatch.schema import faces, matches, photo_analyses, photo_numbers, selfies
    from snapmatch.schema import photos as photos_table

    rng = random.Random(1)
    now = db.utcnow()
    with db.transaction() as conn:
        selfie_id = conn.execute(
            insert(selfies).values(
                event_id=event_id, user_id=attendee_id, image_key="k", status="ready", created_at=now, updated_at=now
            )
        ).inserted_primary_key[0]
    total = photos + photos // 4
    for start in range(0, total, 2000):
        photo_rows, analysis_rows, number_rows, face_rows, match_rows = [], [], [], [], []
        for i in range(start, min(total, start + 2000)):
            pid = i + 1
            ev = event_id if i < photos else other_event_id
            photo_rows.append(
                {
                    "id": pid,
                    "event_id": ev,
                    "sha256": uuid.uuid4().hex,
                    "filename": f"{pid}.jpg",
                    "content_type": "image/jpeg",
                    "size_bytes": 1,
                    "width": 1,
                    "height": 1,
                    "original_key": f"o/{pid}",
                    "thumbnail_key": f"t/{pid}",
                    "status": "done",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            bibs = list({str(rng.randint(1, 5000)) for _ in range(rng.randint(0, 3))})
            tags = rng.sample(WORDS, 4)
            caption = f"A {rng.choice(WORDS)} near the {rng.choice(WORDS)} with {rng.choice(WORDS)}"
            analysis_rows.append(
                {
                    "photo_id": pid,
                    "event_id": ev,
                    "status": "done",
                    "mode": "immediate",
                    "caption": caption,
                    "tags": json.dumps(tags),
                    "numbers": json.dumps(bibs),
                    "visible_text": "[]",
                    "search_text": " ".join(search_words(" ".join([caption, *tags]))),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            number_rows += [{"photo_id": pid, "event_id": ev, "number": b} for b in bibs]
            if ev == event_id and rng.random() < 0.02:  # the attendee is in 2 % of the event's photos
                face_rows.append(
                    {
                        "id": pid,
                        "photo_id": pid,
                        "event_id": ev,
                        "face_index": 0,
                        "left": 0,
                        "top": 0,
                        "width": 1,
                        "height": 1,
                        "score": 1.0,
                        "embedding": b"",
                    }
                )
                match_rows.append(
                    {"selfie_id": selfie_id, "face_id": pid, "photo_id": pid, "event_id": ev, "distance": 0.3}
                )
        with db.transaction() as conn:
            conn.execute(insert(photos_table), photo_rows)
            conn.execute(insert(photo_analyses), analysis_rows)
            if number_rows:
                conn.execute(insert(photo_numbers), number_rows)
            if face_rows:
                conn.execute(insert(faces), face_rows)
                conn.execute(insert(matches), match_rows)
    with db.transaction() as conn:
        if db.get_engine().dialect.name == "postgresql":
            for table in ("photos", "faces", "matches"):  # explicit ids above: move the sequences on
                conn.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
            conn.execute(text("ANALYZE"))


def _time(stmt) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from snapmatch import db
    from snapmatch.schema import photos

    samples = []
    found = 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        with db.connection() as conn:
            found = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar()
            conn.execute(stmt.order_by(photos.c.id).limit(24)).all()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), found


def run(database_url: str, photos: int) -> None:
    from snapmatch import accounts, db, events, settings
    from snapmatch.analysis.search import build_search, parse_query

    os.environ["DATABASE_URL"] = database_url
    settings.get_settings.cache_clear()
    db.dispose_all()
    db.migrate()
    owner = accounts.create_user(f"o{uuid.uuid4().hex[:6]}@example.com", "photographer", "long enough password")
    attendee = accounts.create_user(f"a{uuid.uuid4().hex[:6]}@example.com", "attendee", "long enough password")
    event = events.create_event(owner, "Bench")
    other = events.create_event(owner, "Other")
    started = time.perf_counter()
    _populate(event.id, other.id, photos, attendee.id)
    load = time.perf_counter() - started
    dialect = db.get_engine().dialect.name
    print(f"\n{dialect}: {photos} analysed photos in the event (+{photos // 4} elsewhere), loaded in {load:.1f} s")
    print(f"{'query':<34} {'as':<9} {'median ms':>9} {'matches':>8}")
    for q in ("1234", "podium", "finish line", "podium 1234"):
        for who, viewer in (("owner", None), ("attendee", attendee.id)):
            ms, found = _time(build_search(event.id, parse_query(q), viewer, dialect))
            print(f"{q!r:<34} {who:<9} {ms:>9.2f} {found:>8}")
    db.dispose_all()


def main() -> None:
    photos = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    tmp = Path(tempfile.mkdtemp(prefix="snapmatch-search-bench-"))
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    os.environ["SNAPMATCH_VAR_DIR"] = str(tmp)
    run(f"sqlite:///{tmp}/bench.db", photos)
    name = f"snapmatch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no PostgreSQL here"
        print(f"\nPostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}); SQLite figures only")
        return
    try:
        run(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", photos)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
