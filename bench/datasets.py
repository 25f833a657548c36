"""Photo sets for the face benchmark, built deterministically from real photos of real people.

Real photos: the test images inside PyPI's ``face_recognition`` 1.3.0 source distribution
(Obama several times, Biden), downloaded once into ``~/.cache/snapmatch-test-data`` (or
``$SNAPMATCH_TEST_DATA``), the same layout the test suite uses. Nothing here is committed: the
generated sets go to ``bench/out/sets/`` (gitignored).

Sets (each a directory of photos plus ``<set>.json`` with the ground truth beside it):

* ``ordinary``: the real portraits (0.5-3.3 MP, one face each, location not given) and generated
  group photos of 1-12 MP: head-and-shoulders crops of the real faces pasted on varied
  backgrounds, faces 150-600 px wide.
* ``crowd12``: three 12 MP (4000x3000) crowds, JPEG quality 90, 20 faces each whose boxes are
  50-140 px wide (evenly spread sizes), on a textured background, not overlapping.
* ``crowd24``: one 24 MP (6000x4000) crowd with 30 faces of 50-150 px (for information).

Ground truth per generated face: centre (cx, cy) and width w of its face box, in the photo's pixels.
The face box is the one dlib's detector gives on the source photo, scaled with the crop.

Run ``python bench/datasets.py`` to (re)build and list the sets.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = Path(__file__).resolve().parent / "out"
SETS_DIR = OUT / "sets"
VERSION = 3  # bump when the generation changes: cached sets are rebuilt
REAL_PORTRAITS = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "biden.jpg",
    "32bit.png",
]
# Sources of face crops (32bit.png is obama2.jpg again, the partial faces are partial).
CROP_SOURCES = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


class DataUnavailable(RuntimeError):
    pass


def test_images_dir() -> Path:
    """The face_recognition 1.3.0 test images, downloaded from PyPI once into the cache the tests use."""
    from tests.realphotos import PhotosUnavailable, face_images_dir

    try:
        return face_images_dir()
    except PhotosUnavailable as exc:
        raise DataUnavailable(str(exc)) from exc


@dataclass
class FaceCrop:
    bgr: np.ndarray  # square head-and-shoulders crop, face centred
    face_fraction: float  # face box width / crop side
    source: str


def head_crops(images: Path, margin: float = 0.7) -> list[FaceCrop]:
    """One head-and-shoulders crop around the biggest face of each source photo, padded
    (replicated border) where the crop leaves the photo; plus a mirrored copy of each."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    crops = []
    for name in CROP_SOURCES:
        bgr = cv2.imread(str(images / name), cv2.IMREAD_COLOR)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        rects = detector(gray, 1)
        if not len(rects):
            raise RuntimeError(f"no face found in {name} to crop")
        r = max(rects, key=lambda r: r.width())
        fw = r.right() - r.left()
        cx, cy = (r.left() + r.right()) // 2, (r.top() + r.bottom()) // 2
        half = int(fw * (0.5 + margin))
        padded = cv2.copyMakeBorder(bgr, half, half, half, half, cv2.BORDER_REPLICATE)
        crop = padded[cy : cy + 2 * half, cx : cx + 2 * half].copy()
        crops.append(FaceCrop(crop, fw / (2 * half), name))
        crops.append(FaceCrop(crop[:, ::-1].copy(), fw / (2 * half), name + " (mirrored)"))
    return crops


def background(width: int, height: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A photo-like background without faces (BGR uint8)."""
    if kind == "gradient":
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        c0, c1 = rng.uniform(40, 220, size=3), rng.uniform(40, 220, size=3)
        t = (x / width * 0.6 + y / height * 0.4)[..., None]
        img = c0 * (1 - t) + c1 * t
    elif kind == "blobs":
        small = rng.uniform(30, 230, size=(6, 8, 3)).astype(np.float32)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    elif kind == "stripes":
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        period = rng.uniform(80, 300)
        s = (np.sin((x * 0.8 + y * 0.6) / period * 2 * np.pi) * 0.5 + 0.5)[..., None]
        img = rng.uniform(60, 120, size=3) + s * rng.uniform(40, 120, size=3)
    else:  # "texture": a busy, crowd-scene-like backdrop
        low = cv2.resize(
            rng.uniform(40, 210, size=(9, 12, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
        )
        mid = cv2.resize(
            rng.normal(0, 25, size=(height // 40, width // 40, 3)).astype(np.float32),
            (width, height),
            interpolation=cv2.INTER_LINEAR,
        )
        img = low + mid
        for _ in range(int(width * height / 200_000)):  # shapes: posts, signs, clothes-like blocks
            color = [float(v) for v in rng.uniform(20, 235, size=3)]
            x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
            if rng.random() < 0.5:
                w, h = int(rng.integers(20, 400)), int(rng.integers(20, 400))
                cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), color, -1)
            else:
                x1, y1 = x0 + int(rng.integers(-500, 500)), y0 + int(rng.integers(-500, 500))
                cv2.line(img, (x0, y0), (x1, y1), color, int(rng.integers(2, 14)))
    img = img + rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, crop: FaceCrop, cx: int, cy: int, face_w: int, gain: float) -> dict:
    """Paste ``crop`` scaled so its face is ``face_w`` px wide, centred at (cx, cy), with a soft
    elliptical edge. Returns the ground truth of the pasted face."""
    side = max(8, round(face_w / crop.face_fraction))
    interp = cv2.INTER_AREA if side < crop.bgr.shape[0] else cv2.INTER_CUBIC
    img = cv2.resize(crop.bgr, (side, side), interpolation=interp).astype(np.float32) * gain
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.46), int(side * 0.48)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), side * 0.02 + 0.5)[..., None]
    x0, y0 = cx - side // 2, cy - side // 2
    region = canvas[y0 : y0 + side, x0 : x0 + side].astype(np.float32)
    canvas[y0 : y0 + side, x0 : x0 + side] = np.clip(region * (1 - mask) + img * mask, 0, 255).astype(np.uint8)
    actual_w = side * crop.face_fraction
    return {"cx": x0 + side / 2, "cy": y0 + side / 2, "w": round(actual_w, 1), "source": crop.source}


def compose(
    crops: list[FaceCrop], width: int, height: int, face_widths: list[float], seed: int, kind: str, quality: int = 90
) -> tuple[bytes, list[dict]]:
    """A generated photo: faces of the given widths at random places whose crops do not overlap."""
    rng = np.random.default_rng(seed)
    canvas = background(width, height, rng, kind)
    placed: list[tuple[int, int, int]] = []  # x0, y0, side of each crop square
    faces = []
    order = rng.permutation(len(face_widths))
    for i in sorted(order, key=lambda k: -face_widths[k]):  # biggest first: easiest to fit
        fw = face_widths[i]
        crop = crops[int(rng.integers(0, len(crops)))]
        side = round(fw / crop.face_fraction)
        for _ in range(20_000):
            cx = int(rng.integers(side // 2 + 2, width - side // 2 - 2))
            cy = int(rng.integers(side // 2 + 2, height - side // 2 - 2))
            x0, y0 = cx - side // 2, cy - side // 2
            if all(x0 + side <= px or px + ps <= x0 or y0 + side <= py or py + ps <= y0 for px, py, ps in placed):
                break
        else:
            raise RuntimeError(f"cannot place {len(face_widths)} faces in {width}x{height} (seed {seed})")
        placed.append((x0, y0, side))
        faces.append(paste(canvas, crop, cx, cy, round(fw), gain=float(rng.uniform(0.8, 1.15))))
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes(), faces


# (name, width, height, face widths, background) for the generated group photos of the ordinary set
GROUPS = [
    ("group_1mp.jpg", 1200, 900, [150, 185], "gradient"),
    ("group_3mp.jpg", 2000, 1500, [160, 220, 280], "blobs"),
    ("group_6mp.jpg", 3000, 2000, [200, 260, 330, 400], "stripes"),
    ("group_8mp.jpg", 3264, 2448, [150, 200, 250, 300, 350], "texture"),
    ("group_12mp.jpg", 4000, 3000, [250, 330, 420, 510, 600], "blobs"),
    ("couple_12mp_portrait.jpg", 3000, 4000, [450, 600], "gradient"),
]
CROWDS = {
    "crowd12": [
        ("crowd12_a.jpg", 4000, 3000, 20, 50, 140, 1201),
        ("crowd12_b.jpg", 4000, 3000, 20, 50, 140, 1202),
        ("crowd12_c.jpg", 4000, 3000, 20, 50, 140, 1203),
    ],
    "crowd24": [("crowd24_a.jpg", 6000, 4000, 30, 50, 150, 2401)],
}


def _write_set(name: str, photos: dict[str, dict], files: dict[str, bytes]) -> Path:
    directory = SETS_DIR / name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for fname, data in files.items():
        (directory / fname).write_bytes(data)
    (SETS_DIR / f"{name}.json").write_text(json.dumps({"version": VERSION, "set": name, "photos": photos}, indent=1))
    return directory


def build(force: bool = False) -> dict[str, Path]:
    """Build (or reuse) every set; returns set name -> directory of photos."""
    names = ["ordinary", *CROWDS]
    if not force and all(_is_current(n) for n in names):
        return {n: SETS_DIR / n for n in names}
    images = test_images_dir()
    crops = head_crops(images)

    photos: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    for fname in REAL_PORTRAITS:
        data = (images / fname).read_bytes()
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
        photos[fname] = {"width": w, "height": h, "expected_faces": 1, "faces": None, "real": True}
        files[fname] = data
    for i, (fname, w, h, widths, kind) in enumerate(GROUPS):
        data, faces = compose(crops, w, h, [float(x) for x in widths], seed=100 + i, kind=kind)
        photos[fname] = {"width": w, "height": h, "expected_faces": len(faces), "faces": faces, "real": False}
        files[fname] = data
    _write_set("ordinary", photos, files)

    for set_name, specs in CROWDS.items():
        photos, files = {}, {}
        for fname, w, h, n, lo, hi, seed in specs:
            widths = [float(x) for x in np.linspace(lo, hi, n)]
            data, faces = compose(crops, w, h, widths, seed=seed, kind="texture")
            photos[fname] = {"width": w, "height": h, "expected_faces": n, "faces": faces, "real": False}
            files[fname] = data
        _write_set(set_name, photos, files)
    return {n: SETS_DIR / n for n in names}


def _is_current(name: str) -> bool:
    meta = SETS_DIR / f"{name}.json"
    if not meta.exists():
        return False
    info = json.loads(meta.read_text())
    return info.get("version") == VERSION and all((SETS_DIR / name / p).exists() for p in info["photos"])


def ground_truth(name: str) -> dict[str, dict]:
    return json.loads((SETS_DIR / f"{name}.json").read_text())["photos"]


def main() -> int:
    try:
        sets = build(force="--force" in sys.argv)
    except DataUnavailable as exc:
        print(f"datasets: {exc}", file=sys.stderr)
        return 2
    for name, directory in sets.items():
        gt = ground_truth(name)
        mp = sum(p["width"] * p["height"] for p in gt.values()) / 1e6
        n_faces = sum(p["expected_faces"] for p in gt.values())
        print(f"{name}: {len(gt)} photos, {mp:.1f} MP, {n_faces} faces, in {directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
