"""Test images made on the fly (no third-party photos in the repository)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import cv2
import numpy as np


def jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG without faces: smooth gradient plus noise, distinct bytes per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(1, width)), (y * 255 // max(1, height)), ((x + y) % 256)], axis=-1)
    noise = rng.integers(0, 60, size=(height, width, 3))
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def photo_as(fmt: str, width: int = 640, height: int = 480, seed: int = 0, **options: object) -> bytes:
    """``jpeg()``'s picture saved by Pillow as ``fmt`` ("WEBP", "PNG", "GIF", ...) with ``options``."""
    from PIL import Image

    image = Image.open(io.BytesIO(jpeg(width, height, seed=seed, quality=95)))
    if options.pop("alpha", False):
        image = image.convert("RGBA")
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose IHDR claims a huge size (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zip_file() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("photo.jpg", jpeg(64, 64))
    return out.getvalue()


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
TEXT = b"just some notes, not a photo\n"


def bad_uploads() -> dict[str, tuple[str, bytes, str]]:
    """kind -> (filename, bytes, expected error code)."""
    good = jpeg(320, 240, seed=99)
    return {
        "empty": ("empty.jpg", b"", "empty_file"),
        "text": ("notes.jpg", TEXT, "unsupported_type"),
        "html": ("page.jpg", HTML, "unsupported_type"),
        "truncated_jpeg": ("cut.jpg", good[: len(good) // 2], "truncated_image"),
        "png_bomb_header": ("huge.png", png_header_claiming(60000, 60000), "image_too_large"),
        "zip": ("photos.zip", zip_file(), "unsupported_type"),
        "svg": ("vector.svg", SVG, "unsupported_type"),
        "path_traversal_name": ("../../x.jpg", good, "invalid_filename"),
        "corrupt_jpeg_header": (
            "garbage.jpg",
            b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x13" * 500 + b"\xff\xd9",
            "corrupt_image",
        ),
    }


def head_crop(path, margin: float = 0.9) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Head-and-shoulders crop (BGR) around the biggest face of a real photo, padded at borders."""
    from snapmatch.faces.local import LocalFaceEngine

    bgr = cv2.imread(str(path))
    face = max(LocalFaceEngine().detect(bgr), key=lambda f: f.width)
    cx, cy = face.left + face.width // 2, face.top + face.height // 2
    half = int(face.width * (0.5 + margin))
    padded = cv2.copyMakeBorder(bgr, half, half, half, half, cv2.BORDER_REPLICATE)
    return padded[cy : cy + 2 * half, cx : cx + 2 * half].copy()


def compose(crops: list[np.ndarray], size: tuple[int, int] = (1600, 1000), seed: int = 0) -> bytes:
    """A group photo: the given head crops side by side on a textured background (JPEG bytes)."""
    width, height = size
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), rng.integers(60, 180, size=3), dtype=np.uint8)
    canvas = cv2.add(canvas, rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8))
    slot = width // max(1, len(crops))
    for i, crop in enumerate(crops):
        side = min(slot - 20, height - 40)
        scaled = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        x0 = i * slot + (slot - side) // 2
        y0 = (height - side) // 2
        canvas[y0 : y0 + side, x0 : x0 + side] = scaled
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def variant(path, *, flip: bool = False, crop: float = 1.0, gain: float = 1.0, seed: int = 0) -> bytes:  # type: ignore[no-untyped-def]
    """Another photo of the same person from one real photo: reframed, mirrored, re-exposed."""
    bgr = cv2.imread(str(path))
    h, w = bgr.shape[:2]
    ch, cw = int(h * crop), int(w * crop)
    rng = np.random.default_rng(seed)
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    out = bgr[y0 : y0 + ch, x0 : x0 + cw]
    if flip:
        out = out[:, ::-1]
    out = np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 88])
    assert ok
    return buf.tobytes()


def with_metadata_segments(data: bytes, app2_bytes: int = 180_000, xmp_bytes: int = 20_000) -> bytes:
    """``data`` (a JPEG) with the metadata an editor's export carries before its frame header: an ICC
    profile split over APP2 segments (``app2_bytes`` in all), XMP in APP1, Photoshop's APP13."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    chunk = 65_000
    icc = bytes(range(256)) * (app2_bytes // 256 + 1)
    parts = [icc[i : i + chunk] for i in range(0, app2_bytes, chunk)]
    app2 = b"".join(
        segment(0xE2, b"ICC_PROFILE\x00" + bytes([n + 1, len(parts)]) + part) for n, part in enumerate(parts)
    )
    xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + b"<x:xmpmeta/>" + b" " * xmp_bytes)
    app13 = segment(0xED, b"Photoshop 3.0\x00" + b"8BIM" + b"\x00" * 30_000)
    return data[:2] + app2 + xmp + app13 + data[2:]
