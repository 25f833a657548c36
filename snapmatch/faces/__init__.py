"""Face engines behind one small protocol: find faces in an image and describe each as a vector.

The pipeline only sees ``FaceEngine``; which engine runs (local dlib or Rekognition) is configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class DetectedFace:
    """One face: its box in the original image's pixels (after EXIF orientation) and its descriptor."""

    left: int
    top: int
    width: int
    height: int
    embedding: np.ndarray  # float32, unit-free 128-d for the local engine
    score: float = 0.0


class FaceEngine(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in an RGB uint8 image (H, W, 3), big group photos included."""
        ...

    def detect_selfie(self, rgb: np.ndarray) -> DetectedFace | None:
        """The main face of a selfie (largest), or None when there is no face."""
        ...


def embedding_to_bytes(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype=np.float32).tobytes()


def embedding_from_bytes(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.float32)


def match_distances(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Euclidean distances from one probe vector to every row of ``gallery`` (one mat-vec product)."""
    if gallery.size == 0:
        return np.empty(0, dtype=np.float32)
    diff = gallery - probe[None, :]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))
