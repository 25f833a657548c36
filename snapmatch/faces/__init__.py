"""Face engines behind one small protocol: find faces in an image and describe each as a vector.

The pipeline only sees ``FaceEngine``; which engine runs (local dlib or Rekognition) is configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        """All faces in a BGR uint8 image (H, W, 3) as OpenCV decodes it, group photos included."""
        ...

    def detect_selfie(self, bgr: np.ndarray) -> DetectedFace | None:
        """The main face of a selfie (largest), or None when there is no face."""
        ...


@runtime_checkable
class CollectionFaceEngine(Protocol):
    """An engine that keeps face vectors in the provider's per-event collection (Rekognition).

    The pipeline indexes and searches through it instead of comparing descriptors itself.
    """

    name: str

    def deadline_from(self, started: Any) -> float: ...
    def index_photo(self, event_id: int, photo_id: int, image: Any, *, deadline: float | None = None) -> list: ...
    def index_selfie(self, event_id: int, selfie_id: int, image: Any, *, deadline: float | None = None) -> Any: ...
    def match_photo_faces(self, event_id: int, face_ids: Any, *, deadline: float | None = None) -> dict: ...
    def match_selfie(self, event_id: int, selfie_face_id: str, *, deadline: float | None = None) -> list: ...
    def delete_faces(self, event_id: int, face_ids: Any, *, deadline: float | None = None) -> list: ...


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
