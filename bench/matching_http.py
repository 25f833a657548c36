"""Matching over HTTP: faces-dev through the real service (gunicorn, RQ workers), scored from "my photos".

What an outside check does: a photographer uploads an event's photos, attendees join and send one
selfie, and each attendee's ``GET /api/my-photos`` is compared with who is really in each photo.
Half the photos go up before the attendees join and half after, so both directions of incremental
matching (a photo meeting existing selfies, a selfie meeting existing photos) are exercised.

Scenarios are the matching bench's real-file sets (``bench/matching_bench.py``: event, strangers,
far; the photos are faces-dev's own files, read in place). Printed per set: precision and recall of
the photos shown as theirs, the DIY rule's on the same descriptors, and how many (attendee, photo)
verdicts differ from ``matching_rule.decide`` run on the whole event at once (the matching bench's
figure): 0 means the service, deciding incrementally as jobs finish, ends where the bench's rule does.

Usage: python bench/matching_http.py [--sets event,strangers,far] [--seed 0] [--workers 2]
(Redis DB from BENCH_REDIS_URL, default redis://127.0.0.1:6379/12, flushed; temp SQLite and media.)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

REDIS_URL = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/12"
REAL_FILE_SETS = ("event", "strangers", "far")


def _file_of(key: str) -> Path:
    from matching_sets import FACES_DEV

    return FACES_DEV / key.split(":", 1)[1]


def _upload_name(key: str) -> str:
    return key.split(":", 1)[1].replace("/", "__")


def run_set(name: str, seed: int, workers: int) -> dict[str, float]:
    import matching_bench as mb
    import redis
    import requests
    from benchenv import isolated_environment, start_gunicorn
    from matching_sets import load_library

    lib = load_library(verbose=False)
    scenario = mb.scenario_for(lib, name, 1000 * (mb.SET_NAMES.index(name) + 1) + seed)
    expected_shown, expected_maybe = mb.our_rule(mb.MatchRule())(lib, scenario)
    diy_shown, _ = mb.diy_rule(lib, scenario)

    redis.Redis.from_url(REDIS_URL).flushdb()
    tmp, env = isolated_environment(
        "snapmatch-matching-http-", REDIS_URL, MY_PHOTOS_RATE_LIMIT="100000/minute", PROMETHEUS_MULTIPROC_DIR=""
    )
    from snapmatch import accounts, db, settings

    settings.get_settings.cache_clear()  # each set has its own database and media (this process too)
    db.dispose_all()
    db.migrate()
    procs: list[subprocess.Popen] = []
    try:
        server, url = start_gunicorn(env, tmp / "web.log")
        procs.append(server)
        for n in range(workers):
            log = open(tmp / f"worker{n}.log", "wb")  # noqa: SIM115 - the worker's log, open while it runs
            procs.append(
                subprocess.Popen([sys.executable, "-m", "jobs.worker", "--name", f"match-{n}"], cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )  # fmt: skip
        accounts.create_user("pho@bench.example", "photographer", "bench password 1")
        photographer = requests.Session()
        photographer.headers["Authorization"] = "Bearer " + accounts.create_token("pho@bench.example")
        event = photographer.post(f"{url}/api/events", json={"name": f"matching {name}"}).json()
        t0 = time.monotonic()

        key_of: dict[int, str] = {}  # photo id -> library key

        def upload(keys: list[str]) -> None:
            by_name = {_upload_name(k): k for k in keys}
            for start in range(0, len(keys), 25):
                files = [("files", (_upload_name(k), _file_of(k).read_bytes())) for k in keys[start : start + 25]]
                resp = photographer.post(f"{url}/api/events/{event['id']}/photos", files=files)
                assert resp.status_code == 202, resp.text
                for item in resp.json()["photos"]:
                    assert item["status"] == "queued", item
                    key_of[item["photo_id"]] = by_name[item["filename"]]

        half = len(scenario.photos) // 2
        upload(scenario.photos[:half])
        attendees: dict[str, requests.Session] = {}
        selfie_files = {p: _selfie_path(lib, scenario, p) for p in scenario.references}
        for i, person in enumerate(sorted(scenario.references)):
            email = f"att{i}@bench.example"
            accounts.create_user(email, "attendee", "bench password 1")
            s = requests.Session()
            s.headers["Authorization"] = "Bearer " + accounts.create_token(email)
            joined = s.post(f"{url}/api/events/{event['id']}/join", json={"access_code": event["access_code"]})
            assert joined.ok, joined.text
            sent = s.put(
                f"{url}/api/events/{event['id']}/selfie",
                files={"file": ("me" + selfie_files[person].suffix, selfie_files[person].read_bytes())},
            )
            assert sent.status_code == 202, sent.text
            attendees[person] = s
        upload(scenario.photos[half:])

        deadline = time.monotonic() + 900
        while True:
            counts = photographer.get(f"{url}/api/events/{event['id']}").json()["photo_counts"]
            selfies = [s.get(f"{url}/api/events/{event['id']}/selfie").json()["status"] for s in attendees.values()]
            busy = counts.get("queued", 0) + counts.get("processing", 0) + selfies.count("processing")
            if not busy:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not finished in 15 minutes: {counts}, selfies {selfies}")
            time.sleep(0.5)
        elapsed = time.monotonic() - t0

        shown: dict[str, set[str]] = {}
        maybe: dict[str, set[str]] = {}
        for person, s in attendees.items():
            body = s.get(f"{url}/api/my-photos", params={"event_id": event["id"]}).json()
            shown[person] = {key_of[p["photo_id"]] for p in body["photos"]}
            maybe[person] = {key_of[p["photo_id"]] for p in body["maybe"]}
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)

    ours, diy = mb.Tally(), mb.Tally()
    mb.score(scenario, shown, maybe, ours)
    mb.score(scenario, diy_shown, {}, diy)
    differ = sum(
        len(shown.get(p, set()) ^ expected_shown.get(p, set()))
        + len(maybe.get(p, set()) ^ expected_maybe.get(p, set()))
        for p in scenario.references
    )
    return {
        "photos": len(scenario.photos),
        "attendees": len(attendees),
        "seconds": elapsed,
        "counts": counts,
        "diy_p": diy.precision,
        "diy_r": diy.recall,
        "p": ours.precision,
        "r": ours.recall,
        "maybe_true": ours.maybe_true,
        "maybe_false": ours.maybe_false,
        "differ": differ,
        "wrong": ours.wrong,
        "selfies": selfies,
        "diff": sorted(
            [
                f"{p}: shown by HTTP only {sorted(shown[p] - expected_shown[p])}, by decide() only"
                f" {sorted(expected_shown[p] - shown[p])}; maybe by HTTP only {sorted(maybe[p] - expected_maybe[p])},"
                f" by decide() only {sorted(expected_maybe[p] - maybe[p])}"
                for p in scenario.references
                if shown[p] != expected_shown[p] or maybe[p] != expected_maybe[p]
            ]
        ),
    }


def _selfie_path(lib, scenario, person: str) -> Path:  # type: ignore[no-untyped-def]
    """The faces-dev file whose selfie descriptor the scenario gave this person."""
    from matching_sets import FACES_DEV

    wanted = scenario.references[person][0]
    for path in lib.identities[person]:
        face = lib.selfies.get(f"orig:{path}")
        if face is not None and (face.descriptor == wanted).all():
            return FACES_DEV / path
    raise LookupError(person)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default=",".join(REAL_FILE_SETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="list every verdict that differs from decide()")
    args = parser.parse_args()
    from matching_sets import FacesDevMissing

    print("set        photos attendees |  DIY P  DIY R | HTTP P HTTP R maybe+ maybe- | differ from decide() | seconds")
    for name in args.sets.split(","):
        if name not in REAL_FILE_SETS:
            raise SystemExit(f"{name}: only {', '.join(REAL_FILE_SETS)} are real files that can be uploaded")
        try:
            r = run_set(name, args.seed, args.workers)
        except FacesDevMissing as exc:
            print(f"matching over HTTP skipped: {exc}")
            return 0
        print(
            f"{name:<10} {r['photos']:>6} {r['attendees']:>9} | {r['diy_p']:>6.3f} {r['diy_r']:>6.3f} |"
            f" {r['p']:>6.3f} {r['r']:>6.3f} {r['maybe_true']:>6} {r['maybe_false']:>6} | {r['differ']:>20} |"
            f" {r['seconds']:>7.1f}",
            flush=True,
        )
        for line in r["wrong"]:
            print(f"  WRONG {line}")
        if r["selfies"].count("ready") != len(r["selfies"]):
            print(f"  selfie statuses: {sorted(r['selfies'])}")
        for line in r["diff"] if args.verbose else []:
            print(f"  differs: {line}")
        if r["counts"].get("failed"):
            print(f"  photo counts: {r['counts']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
