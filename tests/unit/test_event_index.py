"""The per-process event index: it grows without copying the event on every job, and searches exactly."""

from __future__ import annotations

import numpy as np

from snapmatch.matching import EventIndex


def _faces(n: int, rng: np.random.Generator) -> np.ndarray:
    """dlib-like descriptors: people ~0.8 apart, a person's faces ~0.4 apart."""
    centres = rng.normal(0, 0.57 / np.sqrt(128), size=(max(10, n // 20), 128))
    who = rng.integers(0, len(centres), size=n)
    return (centres[who] + rng.normal(0, 0.4 / np.sqrt(256), size=(n, 128))).astype(np.float32)


def test_growing_in_small_steps_keeps_every_face_in_order() -> None:
    rng = np.random.default_rng(1)
    vectors = _faces(3000, rng)
    index = EventIndex()
    for start in range(0, 3000, 7):
        rows = range(start, min(3000, start + 7))
        index.append([r + 1 for r in rows], [r // 3 for r in rows], [100.0] * len(rows), vectors[list(rows)])
    assert index.size == 3000 and index.last_id == 3000
    assert (index.face_ids == np.arange(1, 3001)).all()
    assert np.array_equal(index.vectors, vectors)
    assert np.allclose(index.squares, (vectors**2).sum(axis=1), rtol=1e-5)


def test_the_search_finds_exactly_the_faces_within_the_radius() -> None:
    rng = np.random.default_rng(2)
    vectors = _faces(4000, rng)
    index = EventIndex()
    index.append(list(range(1, 4001)), [0] * 4000, [100.0] * 4000, vectors)
    probes = np.concatenate([vectors[rng.integers(0, len(vectors), 20)], _faces(20, rng)])
    distances = np.linalg.norm(vectors[:, None, :] - probes[None, :, :], axis=2)
    for radius in (0.45, 0.5, 0.7):
        boundary = np.abs(distances - radius) < 1e-5  # float rounding at the boundary itself
        assert (index._within(probes, radius) == (distances <= radius))[~boundary].all()
        assert (distances <= radius).sum() > 20  # not vacuous: neighbours exist at every radius
