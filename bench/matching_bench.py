"""Matching bench: precision and recall over (attendee, photo) pairs, ours beside the do-it-yourself rule.

Descriptors come from our real local engine on ``../shared/faces-dev`` and variants built from it
(see ``bench/matching_sets.py``; cached under ``bench/out/matching``). The rules compared:

* ``diy``: what a ``face_recognition`` script does: one selfie, a photo is yours when one of its
  faces is within 0.6 of the selfie.
* ``ours``: ``snapmatch.matching_rule.decide`` with the service's default rule, the very function
  the workers call; only ``sure`` photos count as shown, ``maybe`` ones are reported apart.

Sets (several seeds: who joins, which photo is the selfie; the selfie photo is never an event photo):

* ``event``: the whole faces-dev event (210 photos + 11 group photos), everybody joins.
* ``strangers``: the same event, but a third of the people never join; each stranger's nearest
  look-alike (closest other person) does join.
* ``crowds``: the 11 group photos and composites of 4-7 people's photos pasted into one image.
* ``small``: every photo shrunk so its face is 62-90 px wide (selfie full size).
* ``exif``: every photo and selfie stored sideways with the EXIF orientation tag that turns it upright.
* ``far``: selfie = the person's photo farthest from their own centroid; a quarter never join.

Timing (``--timing``): added time per photo and per selfie at 1k, 10k and 100k faces in one event,
synthetic descriptors (people = random centres, faces = centre + noise at dlib-like spreads).

Usage: python bench/matching_bench.py [--seeds 40] [--timing] [--verbose]

40 seeds by default: with 5, which photos happen to be the selfies moves a set's recall by a few
pairs either way (a person with 5 photos, two of them 0.54 apart, picked as selfie or not).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from matching_sets import FacesDevMissing, Library, load_library  # noqa: E402

from snapmatch.matching_rule import (  # noqa: E402
    Attendee,
    MatchRule,
    Outside,
    Verdict,
    decide,
    group_labels,
    pairwise,
    photo_verdicts,
)

DIY_THRESHOLD = 0.6
SET_NAMES = ("event", "strangers", "crowds", "small", "exif", "far")


@dataclass
class Scenario:
    """One event: its photos, who joins with which reference faces, and the truth."""

    photos: list[str]  # photo keys of the library
    references: dict[str, np.ndarray]  # person -> (k, 128)
    truth: dict[str, set[str]]  # person -> keys of event photos they are in


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    maybe_true: int = 0
    maybe_false: int = 0
    misses: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


Rule = Callable[[Library, Scenario], tuple[dict[str, set[str]], dict[str, set[str]]]]


def _event_faces(lib: Library, scenario: Scenario) -> tuple[np.ndarray, list[int], list[float]]:
    vectors, photo_ids, widths = [], [], []
    for index, key in enumerate(scenario.photos):
        for face in lib.photos[key].faces:
            vectors.append(face.descriptor)
            photo_ids.append(index)
            widths.append(face.width)
    return (np.stack(vectors) if vectors else np.zeros((0, 128), np.float32)), photo_ids, widths


def diy_rule(lib: Library, scenario: Scenario) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    descriptors, photo_ids, _ = _event_faces(lib, scenario)
    shown: dict[str, set[str]] = {}
    for person, refs in scenario.references.items():
        close = pairwise(refs[:1], descriptors).min(axis=0) <= DIY_THRESHOLD
        shown[person] = {scenario.photos[photo_ids[i]] for i in np.flatnonzero(close)}
    return shown, {}


def our_rule(rule: MatchRule) -> Rule:
    def run(lib: Library, scenario: Scenario) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        descriptors, photo_ids, widths = _event_faces(lib, scenario)
        people = sorted(scenario.references)
        attendees = {k: Attendee(scenario.references[p]) for k, p in enumerate(people)}
        groups = group_labels(descriptors, photo_ids, widths, rule)
        verdicts = photo_verdicts(decide(descriptors, photo_ids, widths, groups, attendees, rule), photo_ids)
        shown: dict[str, set[str]] = {p: set() for p in people}
        maybe: dict[str, set[str]] = {p: set() for p in people}
        for (k, photo), (verdict, _) in verdicts.items():
            (shown if verdict is Verdict.SURE else maybe)[people[k]].add(scenario.photos[photo])
        return shown, maybe

    return run


def score(scenario: Scenario, shown: dict[str, set[str]], maybe: dict[str, set[str]], tally: Tally) -> None:
    for person, truth in scenario.truth.items():
        got = shown.get(person, set())
        tally.tp += len(got & truth)
        tally.fp += len(got - truth)
        tally.fn += len(truth - got)
        tally.maybe_true += len(maybe.get(person, set()) & truth)
        tally.maybe_false += len(maybe.get(person, set()) - truth)
        tally.wrong += [f"{person} shown {k}" for k in sorted(got - truth)]
        tally.misses += [f"{person} missed {k}" for k in sorted(truth - got)]


# ---- scenarios ---------------------------------------------------------------------------------


def _selfie(lib: Library, kind: str, path: str) -> np.ndarray | None:
    face = lib.selfies.get(f"{kind}:{path}")
    return None if face is None else face.descriptor[None, :]


def _centroids(lib: Library) -> dict[str, np.ndarray]:
    out = {}
    for person, paths in lib.identities.items():
        vecs = [lib.selfies[f"orig:{p}"].descriptor for p in paths if lib.selfies[f"orig:{p}"] is not None]
        out[person] = np.mean(vecs, axis=0)
    return out


def _nearest_lookalike(lib: Library, person: str) -> str:
    """The other person with the closest pair of photos to this one's."""
    mine = np.stack([lib.selfies[f"orig:{p}"].descriptor for p in lib.identities[person] if lib.selfies[f"orig:{p}"]])
    best, best_d = "", np.inf
    for other, paths in lib.identities.items():
        if other == person:
            continue
        theirs = np.stack([lib.selfies[f"orig:{p}"].descriptor for p in paths if lib.selfies[f"orig:{p}"]])
        d = float(pairwise(mine, theirs).min())
        if d < best_d:
            best, best_d = other, d
    return best


def _build(
    lib: Library,
    kind: str,
    event_keys: list[str],
    selfie_paths: dict[str, str],
    selfie_kind: str | None = None,
) -> Scenario:
    """Attendees = keys of ``selfie_paths``; their selfie photo (any variant) leaves the event."""
    used = set(selfie_paths.values())
    photos = [k for k in event_keys if lib.photos[k].source not in used]
    references = {}
    for person, path in selfie_paths.items():
        ref = _selfie(lib, selfie_kind or "orig", path)
        if ref is not None:
            references[person] = ref
    truth = {p: {k for k in photos if p in lib.photos[k].people} for p in references}
    return Scenario(photos, references, truth)


def _random_selfies(lib: Library, people: list[str], rng: np.random.Generator, kind: str = "orig") -> dict[str, str]:
    out = {}
    for person in people:
        usable = [p for p in lib.identities[person] if lib.selfies.get(f"{kind}:{p}") is not None]
        out[person] = str(rng.choice(usable))
    return out


def scenario_for(lib: Library, name: str, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    people = sorted(lib.identities)
    keys = sorted(lib.photos)
    event_keys = [k for k in keys if k.startswith(("orig:", "group:"))]
    if name == "event":
        return _build(lib, "orig", event_keys, _random_selfies(lib, people, rng))
    if name == "strangers":
        strangers = set(rng.choice(people, size=len(people) // 3, replace=False))
        for s in sorted(strangers):
            strangers.discard(_nearest_lookalike(lib, s))  # the look-alike joins
        joining = [p for p in people if p not in strangers]
        return _build(lib, "orig", event_keys, _random_selfies(lib, joining, rng))
    if name == "crowds":
        crowd_keys = [k for k in keys if k.startswith(("group:", "composite:"))]
        pasted = {s for sources in lib.composite_sources.values() for s in sources}
        selfies = {}
        for person in people:
            usable = [p for p in lib.identities[person] if p not in pasted and lib.selfies[f"orig:{p}"] is not None]
            selfies[person] = str(rng.choice(usable))
        return _build(lib, "orig", crowd_keys, selfies)
    if name == "small":
        return _build(lib, "orig", [k for k in keys if k.startswith("small:")], _random_selfies(lib, people, rng))
    if name == "exif":
        exif_keys = [k for k in keys if k.startswith("exif:")]
        return _build(lib, "exif", exif_keys, _random_selfies(lib, people, rng, "exif"), selfie_kind="exif")
    if name == "far":
        centroids = _centroids(lib)
        joining = [p for p in people if rng.random() >= 0.25]
        selfies = {}
        for person in joining:
            usable = [p for p in lib.identities[person] if lib.selfies[f"orig:{p}"] is not None]
            centre = centroids[person]
            selfies[person] = max(
                usable, key=lambda p: float(np.linalg.norm(lib.selfies[f"orig:{p}"].descriptor - centre))
            )
        return _build(lib, "orig", event_keys, selfies)
    raise ValueError(name)


# ---- timing ------------------------------------------------------------------------------------


def _time_one_event(size: int, attendees_n: int, rng: np.random.Generator) -> tuple[float, float]:
    from snapmatch.matching import EventIndex

    rule = MatchRule()
    people = max(10, size // 20)
    centres = rng.normal(0, 0.57 / np.sqrt(128), size=(people, 128)).astype(np.float32)
    sigma = 0.4 / np.sqrt(2 * 128)

    def faces_of(who: np.ndarray) -> np.ndarray:
        return (centres[who] + rng.normal(0, sigma, size=(len(who), 128))).astype(np.float32)

    who = rng.integers(0, people, size=size)
    index = EventIndex()
    index.append(list(range(1, size + 1)), (np.arange(size) // 3).tolist(), [120.0] * size, faces_of(who))
    # Groups as the worker keeps them: here the true person (the timing does not judge them).
    group_of = {i + 1: int(who[i]) for i in range(size)}
    members_of: dict[int, list[int]] = {}
    for face_id, g in group_of.items():
        members_of.setdefault(g, []).append(face_id)
    attendees = {a: Attendee(faces_of(np.array([a]))) for a in range(min(people, attendees_n))}

    def redecide(groups: set[int]) -> None:
        members = [f for g in groups for f in members_of[g]]
        rows = np.asarray(members, dtype=np.int64) - 1
        labels = [group_of[f] for f in members]
        inside = set(members)

        # As the worker reads beyond the touched groups: the attendee's evidence, the index's neighbours.
        def own(a: int) -> tuple[np.ndarray, np.ndarray]:
            theirs = np.asarray([f - 1 for f in members_of.get(a, []) if f not in inside], dtype=np.int64)
            return index.photo_ids[theirs], index.vectors[theirs]

        def near(probes: np.ndarray) -> list[tuple[np.ndarray, list[int | None]]]:
            out = []
            for ids in index.within_each(probes, rule.link):
                hit = [f for f in ids if f not in inside]
                owners = [group_of[f] if group_of[f] in attendees else None for f in hit]
                out.append((index.vectors[np.asarray(hit, dtype=np.int64) - 1], owners))
            return out

        decide(
            index.vectors[rows], index.photo_ids[rows], index.widths[rows], labels, attendees, rule, Outside(own, near)
        )

    photo_times, selfie_times = [], []
    for trial in range(20):
        new = faces_of(rng.integers(0, people, size=3))
        t0 = time.process_time()
        linked = index.linked(new, [120.0] * 3, -1 - trial, rule)
        redecide({group_of[f] for near in linked for f in near})
        photo_times.append(time.process_time() - t0)
    for _ in range(5):
        ref = faces_of(rng.integers(0, people, size=1))
        t0 = time.process_time()
        redecide({group_of[f] for f in index.near(ref, rule.reach)})
        selfie_times.append(time.process_time() - t0)
    return float(np.median(photo_times)) * 1000, float(np.median(selfie_times)) * 1000


def timing(sizes: tuple[int, ...] = (1_000, 10_000, 100_000), attendees_n: int = 500) -> list[tuple[int, float, float]]:
    """Added CPU time per photo (3 new faces) and per selfie, compute only (the worker's database
    round trips are not in it), with the worker's own pieces: ``EventIndex.linked`` / ``near`` for
    neighbours and ``decide`` over the touched groups, ``attendees_n`` attendees, one BLAS thread.

    Synthetic descriptors at dlib-like spreads: people are random centres ~0.8 apart, a person's
    faces ~0.4 apart, 20 faces per person."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # as in a worker: one BLAS thread per process
    rng = np.random.default_rng(7)
    return [(size, *_time_one_event(size, attendees_n, rng)) for size in sizes]


# ---- main --------------------------------------------------------------------------------------


def run_sets(lib: Library, seeds: int, rules: dict[str, Rule]) -> dict[str, dict[str, Tally]]:
    results: dict[str, dict[str, Tally]] = {}
    for name in SET_NAMES:
        results[name] = {r: Tally() for r in rules}
        for seed in range(seeds):
            scenario = scenario_for(lib, name, 1000 * (SET_NAMES.index(name) + 1) + seed)
            for rule_name, rule in rules.items():
                shown, maybe = rule(lib, scenario)
                score(scenario, shown, maybe, results[name][rule_name])
    return results


def print_table(results: dict[str, dict[str, Tally]], seeds: int) -> None:
    print(f"\nMatching over (attendee, photo) pairs, {seeds} seeds per set; ours counts only photos shown as theirs")
    head = f"{'set':<10} {'pairs':>6} | {'DIY P':>7} {'DIY R':>7} | {'ours P':>7} {'ours R':>7}"
    print(f"{head} {'R+maybe':>8} {'maybe+':>7} {'maybe-':>7} | {'found DIY/ours':>14}")
    worst = {"diy": [1.0, 1.0], "ours": [1.0, 1.0]}
    for name, by_rule in results.items():
        d, o = by_rule["diy"], by_rule["ours"]
        pairs = o.tp + o.fn
        print(
            f"{name:<10} {pairs:>6} | {d.precision:>7.3f} {d.recall:>7.3f} | {o.precision:>7.3f} {o.recall:>7.3f}"
            f" {(o.tp + o.maybe_true) / max(1, pairs):>8.3f} {o.maybe_true:>7} {o.maybe_false:>7} |"
            f" {f'{d.tp}/{o.tp}':>14}"
        )
        for r, t in (("diy", d), ("ours", o)):
            worst[r][0] = min(worst[r][0], t.precision)
            worst[r][1] = min(worst[r][1], t.recall)
    print(
        f"{'worst':<10} {'':>6} | {worst['diy'][0]:>7.3f} {worst['diy'][1]:>7.3f} | {worst['ours'][0]:>7.3f}"
        f" {worst['ours'][1]:>7.3f}"
    )
    print("maybe+ / maybe-: photos offered under 'maybe' that are / are not the attendee's (never shown as theirs);")
    print("R+maybe: recall once the attendee confirms what 'maybe' offers them")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--no-sets", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if not args.no_sets:
        try:
            lib = load_library()
        except FacesDevMissing as exc:
            print(f"matching bench skipped: {exc}")
            return 0
        rules = {"diy": diy_rule, "ours": our_rule(MatchRule())}
        results = run_sets(lib, args.seeds, rules)
        print_table(results, args.seeds)
        if args.verbose:
            for name, by_rule in results.items():
                o = by_rule["ours"]
                for line in sorted(set(o.wrong))[:20]:
                    print(f"  {name}: WRONG {line}")
                for line in sorted(set(o.misses))[:40]:
                    print(f"  {name}: {line}")
    if args.timing:
        print("\nAdded matching CPU time (one thread), one event, synthetic descriptors, 500 attendees; median;")
        print("a photo = 3 new faces; compute only: neighbours in the in-memory index + the rule over touched groups")
        print(f"{'faces':>8} {'per photo ms':>13} {'per selfie ms':>14}")
        for size, photo_ms, selfie_ms in timing():
            print(f"{size:>8} {photo_ms:>13.2f} {selfie_ms:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
