"""The service decides incrementally what the rule decides on the whole event at once.

Photos and selfies of a synthetic event (descriptors at dlib-like spreads, with borderline lone
photos, look-alike strangers and group photos) are written through the worker's own functions in a
shuffled order; the photos and maybes every attendee ends up with must be exactly what
``matching_rule.decide`` gives when it reads every face of the event in one go (what the matching
bench measures). Each rule path (direct, group, centre, maybe) must occur, or the test says so.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import insert, select

from snapmatch import db
from snapmatch.faces import DetectedFace
from snapmatch.matching import write_local_selfie, write_photo_faces
from snapmatch.matching_rule import (
    Attendee,
    Basis,
    MatchRule,
    Verdict,
    decide,
    group_labels,
    photo_verdicts,
)
from snapmatch.schema import PhotoStatus, SelfieStatus, events, faces, matches, maybe_matches, photos, selfies

RULE = MatchRule()


def synthetic_event(seed: int) -> tuple[dict[int, np.ndarray], list[list[tuple[int, np.ndarray, float]]]]:
    """People (centres ~0.85 apart), their selfies, and photos of 1-4 faces: (person, descriptor, width)."""
    rng = np.random.default_rng(seed)
    people = 14
    centres = rng.normal(0, 0.6 / np.sqrt(128), size=(people, 128))
    # Look-alikes: person 13 is close to person 0, person 12 to person 1.
    centres[13] = centres[0] + rng.normal(0, 0.36 / np.sqrt(128), 128)
    centres[12] = centres[1] + rng.normal(0, 0.38 / np.sqrt(128), 128)

    def face(person: int, spread: float) -> np.ndarray:
        return (centres[person] + rng.normal(0, spread / np.sqrt(2 * 128), 128)).astype(np.float32)

    selfie_of = {p: face(p, 0.4) for p in range(10)}  # 10 attendees; 10-13 never join
    shots: list[list[tuple[int, np.ndarray, float]]] = []
    for _ in range(70):
        who = rng.choice(people, size=int(rng.integers(1, 5)), replace=False)
        shots.append(
            [
                (int(p), face(int(p), float(rng.choice([0.35, 0.45, 0.55]))), float(rng.choice([60.0, 120.0])))
                for p in who
            ]
        )
    return selfie_of, shots


def _photo_row(conn, event_id: int, n: int) -> int:  # type: ignore[no-untyped-def]
    now = db.utcnow()
    return conn.execute(
        insert(photos).values(
            event_id=event_id,
            sha256=f"{n:064x}",
            filename=f"p{n}.jpg",
            content_type="image/jpeg",
            size_bytes=1,
            width=1000,
            height=800,
            original_key=f"o/{n}",
            status=PhotoStatus.PROCESSING.value,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]


@pytest.mark.parametrize(("seed", "selfies_first"), [(3, False), (11, False), (5, True)])
def test_the_service_ends_where_the_whole_event_rule_does(env, make_user, seed: int, selfies_first: bool) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import accounts

    selfie_of, shots = synthetic_event(seed)
    owner_email, _ = make_user("photographer")
    users = {
        p: accounts.create_user(f"a{p}-{seed}@example.com", "attendee", "correct horse battery") for p in selfie_of
    }
    with db.transaction() as conn:
        event_id = conn.execute(
            insert(events).values(
                owner_id=accounts.find_user(owner_email).id, name="e", access_code="C0DE1234", created_at=db.utcnow()
            )
        ).inserted_primary_key[0]
        photo_ids = [_photo_row(conn, event_id, n) for n in range(len(shots))]
        selfie_ids = {
            p: conn.execute(
                insert(selfies).values(
                    event_id=event_id,
                    user_id=users[p].id,
                    image_key=f"s/{p}",
                    status=SelfieStatus.PROCESSING.value,
                    created_at=db.utcnow(),
                    updated_at=db.utcnow(),
                )
            ).inserted_primary_key[0]
            for p in selfie_of
        }

    # Shuffled arrival: selfies among the photos, as attendees join while the photographer uploads;
    # or every attendee first, so that each photo's new evidence must reach maybes written earlier.
    steps = [("selfie", p) for p in selfie_of] + [("photo", n) for n in range(len(shots))]
    order = np.arange(len(steps)) if selfies_first else np.random.default_rng(seed + 1).permutation(len(steps))
    for k in order:
        kind, what = steps[k]
        if kind == "photo":
            detected = [DetectedFace(10 * i, 10, int(w), int(w), vec) for i, (_, vec, w) in enumerate(shots[what])]
            write_photo_faces(
                photo_id=photo_ids[what], event_id=event_id, detected=detected, threshold=0.6, photo_values={}
            )
        else:
            write_local_selfie(
                selfie_id=selfie_ids[what],
                event_id=event_id,
                image_key=f"s/{what}",
                threshold=0.6,
                embedding=selfie_of[what],
            )

    with db.transaction() as conn:
        rows = conn.execute(
            select(faces.c.id, faces.c.photo_id, faces.c.width, faces.c.embedding)
            .where(faces.c.event_id == event_id)
            .order_by(faces.c.id)
        ).all()
        user_of_selfie = {s: users[p].id for p, s in selfie_ids.items()}
        sure = {(user_of_selfie[r.selfie_id], r.photo_id) for r in conn.execute(select(matches))}
        basis = {r.basis for r in conn.execute(select(matches.c.basis))}
        maybe = {(user_of_selfie[r.selfie_id], r.photo_id) for r in conn.execute(select(maybe_matches))} - sure

    descriptors = np.stack([np.frombuffer(r.embedding, np.float32) for r in rows])
    pids = [r.photo_id for r in rows]
    widths = [float(r.width) for r in rows]
    attendees = {users[p].id: Attendee(selfie_of[p][None, :]) for p in selfie_of}
    decisions = decide(descriptors, pids, widths, group_labels(descriptors, pids, widths, RULE), attendees, RULE)
    verdicts = photo_verdicts(decisions, pids)
    want_sure = {k for k, (v, _) in verdicts.items() if v is Verdict.SURE}
    want_maybe = {k for k, (v, _) in verdicts.items() if v is Verdict.MAYBE}

    # Not vacuous: every path of the rule occurs in this event.
    assert {d.basis for d in decisions if d.verdict is Verdict.SURE} >= {Basis.DIRECT, Basis.GROUP, Basis.CENTRE}
    assert want_maybe
    assert sorted(sure - want_sure) == [] and sorted(want_sure - sure) == []
    assert sorted(maybe - want_maybe) == [] and sorted(want_maybe - maybe) == []
    assert basis >= {Basis.DIRECT.value, Basis.GROUP.value, Basis.CENTRE.value}


# ---- a selfie that goes lets the runner-up have its faces --------------------------------------


def _two_attendees_one_face(make_user):  # type: ignore[no-untyped-def]
    """Attendees A and B, one photo whose face is sure-close to both, a little closer to A."""
    from snapmatch import accounts

    owner_email, _ = make_user("photographer")
    a = accounts.create_user("a-runner@example.com", "attendee", "correct horse battery")
    b = accounts.create_user("b-runner@example.com", "attendee", "correct horse battery")
    base = np.zeros(128, np.float32)
    base[0] = 1.0
    selfie_a, selfie_b, face = base.copy(), base.copy(), base.copy()
    selfie_a[1], selfie_b[2], face[3] = 0.3, 0.35, 0.25  # face: 0.39 from A, 0.43 from B
    with db.transaction() as conn:
        event_id = conn.execute(
            insert(events).values(
                owner_id=accounts.find_user(owner_email).id, name="e", access_code="C0DE1234", created_at=db.utcnow()
            )
        ).inserted_primary_key[0]
        photo_id = _photo_row(conn, event_id, 1)
        selfie_ids = [
            conn.execute(
                insert(selfies).values(
                    event_id=event_id,
                    user_id=u.id,
                    image_key=f"s/{u.id}",
                    status=SelfieStatus.PROCESSING.value,
                    created_at=db.utcnow(),
                    updated_at=db.utcnow(),
                )
            ).inserted_primary_key[0]
            for u in (a, b)
        ]
    for selfie_id, user, vector in zip(selfie_ids, (a, b), (selfie_a, selfie_b), strict=True):
        write_local_selfie(
            selfie_id=selfie_id, event_id=event_id, image_key=f"s/{user.id}", threshold=0.6, embedding=vector
        )
    write_photo_faces(
        photo_id=photo_id,
        event_id=event_id,
        detected=[DetectedFace(0, 0, 120, 120, face)],
        threshold=0.6,
        photo_values={},
    )
    return event_id, photo_id, a, b, dict(zip((a.id, b.id), selfie_ids, strict=True))


def _holders(selfie_ids: dict[int, int]) -> dict[int, str]:
    user_of = {s: u for u, s in selfie_ids.items()}
    with db.connection() as conn:
        out = {user_of[r.selfie_id]: "sure" for r in conn.execute(select(matches)) if r.selfie_id in user_of}
        out |= {user_of[r.selfie_id]: "maybe" for r in conn.execute(select(maybe_matches)) if r.selfie_id in user_of}
    return out


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_selfie_that_goes_lets_the_runner_up_have_its_faces(env, make_user, how: str) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import selfies as selfie_module
    from snapmatch.settings import get_settings
    from snapmatch.storage import open_storage

    event_id, _, a, b, selfie_ids = _two_attendees_one_face(make_user)
    assert _holders(selfie_ids) == {a.id: "sure"}  # B is the runner-up: one attendee per face
    storage = open_storage(get_settings().STORAGE_URL)
    if how == "deleted":
        result = selfie_module.delete_selfie(a, event_id, storage=storage)
    else:
        ok, jpeg = cv2.imencode(".jpg", np.full((200, 200, 3), 128, np.uint8))
        assert ok
        tmp = Path(env["SNAPMATCH_VAR_DIR"]) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        result = selfie_module.put_selfie(
            a, event_id, io.BytesIO(jpeg.tobytes()), storage=storage, settings=get_settings(), tmp_dir=str(tmp)
        )
    assert _holders(selfie_ids) == {b.id: "sure"}
    assert result.changed_users == {b.id}  # B's cached photos must go
