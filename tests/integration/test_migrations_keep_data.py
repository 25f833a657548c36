"""Migrations keep what is stored: on SQLite, Alembic's batch mode rebuilds a table by copy, DROP and
rename, and with foreign keys on the DROP of ``events`` deleted every photo (ON DELETE CASCADE)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, insert, select


def test_upgrading_from_0004_keeps_every_photo(env) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from alembic.config import Config

    from snapmatch import db
    from snapmatch.schema import events, photos, users

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.attributes["engine"] = db.get_engine()
    command.downgrade(cfg, "0004")
    now = db.utcnow()
    with db.transaction() as conn:
        user_id = conn.execute(
            insert(users).values(email="p@example.com", password_hash="x", role="photographer", created_at=now)
        ).inserted_primary_key[0]
        event_id = conn.execute(
            insert(events).values(owner_id=user_id, name="E", access_code="ABC", created_at=now)
        ).inserted_primary_key[0]
        for i in range(3):
            conn.execute(
                insert(photos).values(
                    event_id=event_id,
                    sha256=f"{i:064d}",
                    filename=f"{i}.jpg",
                    content_type="image/jpeg",
                    size_bytes=1,
                    width=1,
                    height=1,
                    original_key=f"k{i}",
                    status="queued",
                    created_at=now,
                    updated_at=now,
                )
            )
    command.upgrade(cfg, "head")
    with db.connection() as conn:
        assert conn.execute(select(func.count()).select_from(photos)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 1
