"""No internal text reaches users (issue 13, item 5): a failed photo or selfie shows a code and the
sentence for that code; the exception text (paths, database host) goes to the log only."""

from __future__ import annotations

import io
import logging

from tests.images import jpeg

SECRET_TEXT = "connection to server at db-primary.internal (10.0.3.7), port 5432 failed: /var/lib/snapmatch"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class LastAttempt:
    """What RQ hands the failure callback after the last attempt."""

    retries_left = 0

    def __init__(self, *args: object) -> None:
        self.args = args
        self.id = f"job-{args[0]}-0"


def test_a_failed_photo_and_selfie_show_a_sentence_not_the_exception(client, make_user, caplog) -> None:  # type: ignore[no-untyped-def]
    from jobs.photo import on_photo_job_failure
    from jobs.selfie import on_selfie_job_failure
    from snapmatch import selfies
    from snapmatch.accounts import find_user
    from snapmatch.errors import user_message

    _, photographer = make_user("photographer")
    event = client.post("/api/events", json={"name": "Gala"}, headers=auth(photographer)).json
    resp = client.post(
        f"/api/events/{event['id']}/photos",
        data={"files": [(io.BytesIO(jpeg(seed=1)), "a.jpg")]},
        headers=auth(photographer),
        content_type="multipart/form-data",
    )
    photo_id = resp.json["photos"][0]["photo_id"]
    email, attendee = make_user("attendee")
    client.post(f"/api/events/{event['id']}/join", json=event, headers=auth(attendee))
    client.put(
        f"/api/events/{event['id']}/selfie",
        data={"file": (io.BytesIO(jpeg(seed=2)), "me.jpg")},
        headers=auth(attendee),
        content_type="multipart/form-data",
    )
    selfie = selfies.get_selfie(find_user(email), event["id"])

    with caplog.at_level(logging.ERROR):
        on_photo_job_failure(LastAttempt(photo_id), None, OSError, OSError(SECRET_TEXT), None)
        on_selfie_job_failure(LastAttempt(selfie.id, selfie.image_key), None, OSError, OSError(SECRET_TEXT), None)

    expected = {"code": "processing_error", "message": user_message("processing_error")}
    photo = client.get(f"/api/photos/{photo_id}", headers=auth(photographer)).json
    assert photo["status"] == "failed" and photo["error"] == expected
    batch = client.get(f"/api/batches/{resp.json['batch_id']}", headers=auth(photographer)).json
    assert batch["photos"][0]["error"] == expected
    mine = client.get(f"/api/events/{event['id']}/selfie", headers=auth(attendee)).json
    assert mine == {"status": "failed", "error": expected}
    assert SECRET_TEXT in caplog.text  # the details are logged for the operator


def test_every_code_stored_on_a_row_has_its_own_sentence() -> None:
    from snapmatch.errors import GENERIC_MESSAGE, USER_MESSAGES

    for code in ("processing_error", "abandoned", "corrupt_image", "provider_image", "provider_rejected", "no_face"):
        assert USER_MESSAGES[code] != GENERIC_MESSAGE
    assert all(message.endswith(".") and "{" not in message for message in USER_MESSAGES.values())


def test_migration_0005_replaces_raw_error_text_stored_before(env) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert, select

    from snapmatch import db
    from snapmatch.errors import user_message
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
        conn.execute(
            insert(photos).values(
                event_id=event_id,
                sha256="0" * 64,
                filename="a.jpg",
                content_type="image/jpeg",
                size_bytes=1,
                width=1,
                height=1,
                original_key="k",
                status="failed",
                error_code="processing_error",
                error_message=f"last error: OperationalError: {SECRET_TEXT}",
                created_at=now,
                updated_at=now,
            )
        )
    command.upgrade(cfg, "head")
    with db.connection() as conn:
        assert conn.execute(select(photos.c.error_message)).scalar() == user_message("processing_error")
