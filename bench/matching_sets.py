"""Labelled photo sets for the matching bench, described once with our real local engine.

Source: ``../shared/faces-dev`` (27 people, 210 photos, 11 group photos; see its README). The photos
are read from there and never copied into the repository; the variants built from them (composites,
small faces, sideways EXIF) and every descriptor are cached in ``bench/out/matching/`` (gitignored).

Each image is described exactly as a worker does it: ``imaging.prepare(bytes)`` (EXIF orientation,
reduced decode) then ``LocalFaceEngine(min_face_px=FACE_MIN_SIZE).detect`` for event photos and
``detect_selfie`` for reference photos. A face keeps its descriptor and its width in the original's
pixels.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

FACES_DEV = ROOT.parent / "shared" / "faces-dev"
# MATCHING_BENCH_DETECTOR=yunet describes the sets with YuNet boxes (bench/yunet_bench.py) instead.
DETECTOR = os.environ.get("MATCHING_BENCH_DETECTOR", "hog")
CACHE_DIR = HERE / "out" / ("matching" if DETECTOR == "hog" else f"matching-{DETECTOR}")
VERSION = 3  # bump when the variants or the extraction change (3: selfies the selfie job refuses are none)
COMPOSITES = 18
COMPOSITE_PEOPLE = (4, 7)
# Small-face variant: the photo is shrunk so its face is this wide (px), spread over the range.
SMALL_FACE_PX = (62, 90)


class FacesDevMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Face:
    descriptor: np.ndarray  # (128,) float32
    width: float  # face box width in the original's pixels


@dataclass(frozen=True)
class Photo:
    key: str  # e.g. "orig:photos/Tony_Blair/3.jpg", "small:...", "exif:...", "composite:4"
    people: frozenset[str]  # who is in it (ground truth)
    faces: tuple[Face, ...]
    source: str  # the faces-dev photo it was made from ("" for composites and groups)


@dataclass(frozen=True)
class Library:
    """Everything the bench evaluates on: event photos by variant, reference descriptors by photo."""

    identities: dict[str, list[str]]  # person -> faces-dev paths of their photos
    photos: dict[str, Photo]  # by key
    selfies: dict[str, Face | None]  # "orig:<path>" / "exif:<path>" -> the selfie face (None: not found)
    composite_sources: dict[str, list[str]]  # composite key -> faces-dev paths pasted into it


def manifest() -> dict:
    path = FACES_DEV / "MANIFEST.json"
    if not path.exists():
        raise FacesDevMissing(f"{FACES_DEV} is not there (the labelled face photos); the matching bench needs it")
    return json.loads(path.read_text())


def _engine():  # type: ignore[no-untyped-def]
    from snapmatch.faces.local import LocalFaceEngine
    from snapmatch.settings import get_settings

    if DETECTOR == "yunet":
        from yunet_bench import YuNetEngine

        return YuNetEngine(get_settings().FACE_MIN_SIZE)
    return LocalFaceEngine(min_face_px=get_settings().FACE_MIN_SIZE)


def _describe(engine, data: bytes, *, selfie: bool) -> list[Face]:  # type: ignore[no-untyped-def]
    from snapmatch import imaging

    prepared = imaging.prepare(data, max_pixels=100_000_000)
    if selfie:
        # The selfie job's own decision: a photo it would refuse (several faces, tiny, blurred) is no
        # selfie here either (the attendee would be asked for another one).
        from snapmatch.pipeline import describe_reference

        found, _refusal = describe_reference(engine, prepared)
        detected = [found] if found is not None else []
    else:
        detected = engine.detect(prepared.bgr)
    return [Face(np.asarray(f.embedding, np.float32), f.width / prepared.scale) for f in detected]


def _jpeg(bgr: np.ndarray, exif_orientation: int | None = None, quality: int = 92) -> bytes:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))
    out = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(out, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def sideways(data: bytes, orientation: int) -> bytes:
    """The photo stored rotated, with the EXIF tag that turns it upright (6: turn 90 deg clockwise
    to view, as a phone held one way writes it; 8: the other way)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    stored = cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE if orientation == 6 else cv2.ROTATE_90_CLOCKWISE)
    return _jpeg(stored, orientation)


def shrunk(data: bytes, face_width: float, target: float) -> bytes:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    factor = min(1.0, target / max(face_width, 1.0))
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return _jpeg(small, quality=85)


def composite(sources: list[bytes], face_widths: list[float], seed: int) -> bytes:
    """Several people's photos pasted side by side on one background, each scaled so its face is
    80-160 px: a crowd-like photo whose people are known."""
    from datasets import background

    rng = np.random.default_rng(seed)
    tiles = []
    for data, fw in zip(sources, face_widths, strict=True):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        target = float(rng.uniform(80, 160))
        factor = target / max(fw, 1.0)
        h, w = bgr.shape[:2]
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        tiles.append(cv2.resize(bgr, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp))
    gap = 40
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) + 1)
    height = max(t.shape[0] for t in tiles) + 2 * gap
    canvas = background(width, height, rng, "blobs")
    x = gap
    for tile in tiles:
        y = gap + int(rng.integers(0, height - 2 * gap - tile.shape[0] + 1))
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return _jpeg(canvas, quality=90)


def _fingerprint(meta: dict) -> str:
    h = hashlib.sha256(str(VERSION).encode())
    for path in sorted(meta["provenance"]):
        p = FACES_DEV / path
        h.update(path.encode())
        h.update(str(p.stat().st_size if p.exists() else -1).encode())
    return h.hexdigest()[:16]


def _save(library: Library, fingerprint: str) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    vectors: list[np.ndarray] = []
    photos_meta = {}
    for key, photo in library.photos.items():
        photos_meta[key] = {
            "people": sorted(photo.people),
            "source": photo.source,
            "faces": [[len(vectors) + i, f.width] for i, f in enumerate(photo.faces)],
        }
        vectors.extend(f.descriptor for f in photo.faces)
    selfies_meta = {}
    for key, face in library.selfies.items():
        if face is None:
            selfies_meta[key] = None
        else:
            selfies_meta[key] = [len(vectors), face.width]
            vectors.append(face.descriptor)
    np.save(CACHE_DIR / "descriptors.npy", np.stack(vectors).astype(np.float32))
    (CACHE_DIR / "library.json").write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                "identities": library.identities,
                "photos": photos_meta,
                "selfies": selfies_meta,
                "composite_sources": library.composite_sources,
            }
        )
    )


def _load(fingerprint: str) -> Library | None:
    meta_path, vec_path = CACHE_DIR / "library.json", CACHE_DIR / "descriptors.npy"
    if not meta_path.exists() or not vec_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("fingerprint") != fingerprint:
        return None
    vectors = np.load(vec_path)
    photos = {
        key: Photo(
            key,
            frozenset(p["people"]),
            tuple(Face(vectors[i], w) for i, w in p["faces"]),
            p["source"],
        )
        for key, p in meta["photos"].items()
    }
    selfies = {k: (None if v is None else Face(vectors[v[0]], v[1])) for k, v in meta["selfies"].items()}
    return Library(meta["identities"], photos, selfies, meta["composite_sources"])


def load_library(verbose: bool = True) -> Library:
    """The described sets, from the cache when faces-dev and this code have not changed."""
    meta = manifest()
    fingerprint = _fingerprint(meta)
    cached = _load(fingerprint)
    if cached is not None:
        return cached
    engine = _engine()
    identities = {person: sorted(paths) for person, paths in meta["identities"].items()}
    photos: dict[str, Photo] = {}
    selfies: dict[str, Face | None] = {}
    rng = np.random.default_rng(2026)
    paths = [(person, p) for person, ps in identities.items() for p in ps]
    for n, (person, path) in enumerate(paths):
        if verbose and n % 30 == 0:
            print(f"  describing faces-dev photos with the local engine: {n}/{len(paths)}", flush=True)
        data = (FACES_DEV / path).read_bytes()
        faces = _describe(engine, data, selfie=False)
        photos[f"orig:{path}"] = Photo(f"orig:{path}", frozenset([person]), tuple(faces), path)
        selfie = _describe(engine, data, selfie=True)
        selfies[f"orig:{path}"] = selfie[0] if selfie else None
        turned = sideways(data, 6 if n % 2 == 0 else 8)
        photos[f"exif:{path}"] = Photo(
            f"exif:{path}", frozenset([person]), tuple(_describe(engine, turned, selfie=False)), path
        )
        turned_selfie = _describe(engine, turned, selfie=True)
        selfies[f"exif:{path}"] = turned_selfie[0] if turned_selfie else None
        main_width = selfies[f"orig:{path}"].width if selfies[f"orig:{path}"] else 100.0
        small = shrunk(data, main_width, float(rng.uniform(*SMALL_FACE_PX)))
        photos[f"small:{path}"] = Photo(
            f"small:{path}", frozenset([person]), tuple(_describe(engine, small, selfie=False)), path
        )
    for path, people in meta["groups"].items():
        data = (FACES_DEV / path).read_bytes()
        photos[f"group:{path}"] = Photo(
            f"group:{path}", frozenset(people), tuple(_describe(engine, data, selfie=False)), ""
        )
    # Composites: two photos per person are kept out of them (reference photos for the crowd set).
    people = sorted(identities)
    reserved = {p: set(rng.choice(identities[p], size=2, replace=False)) for p in people}
    composite_sources: dict[str, list[str]] = {}
    for c in range(COMPOSITES):
        count = int(rng.integers(COMPOSITE_PEOPLE[0], COMPOSITE_PEOPLE[1] + 1))
        chosen = rng.choice(people, size=count, replace=False)
        sources = [str(rng.choice(sorted(set(identities[p]) - reserved[p]))) for p in chosen]
        widths = [(selfies[f"orig:{s}"].width if selfies[f"orig:{s}"] else 100.0) for s in sources]
        data = composite([(FACES_DEV / s).read_bytes() for s in sources], widths, seed=3000 + c)
        key = f"composite:{c}"
        photos[key] = Photo(key, frozenset(str(p) for p in chosen), tuple(_describe(engine, data, selfie=False)), "")
        composite_sources[key] = sources
    library = Library(identities, photos, selfies, composite_sources)
    _save(library, fingerprint)
    return library


if __name__ == "__main__":
    lib = load_library()
    kinds: dict[str, list[int]] = {}
    for key, photo in lib.photos.items():
        kinds.setdefault(key.split(":")[0], []).append(len(photo.faces))
    for kind, counts in kinds.items():
        print(f"{kind}: {len(counts)} photos, {sum(counts)} faces, {sum(1 for c in counts if c == 0)} without a face")
    print(f"selfies: {sum(1 for f in lib.selfies.values() if f is not None)}/{len(lib.selfies)} with a face")
