"""Refusing reference photos too poor to match on, with a reason the attendee can act on."""

from __future__ import annotations

import cv2
import numpy as np

from snapmatch.selfie_check import face_sharpness, selfie_refusal


def test_a_good_selfie_passes() -> None:
    assert selfie_refusal([240.0], sharpness=40.0) is None
    assert selfie_refusal([240.0, 90.0], sharpness=40.0) is None  # someone small in the background
    assert selfie_refusal([240.0, 160.0], sharpness=40.0) is None  # someone behind: the attendee is nearest


def test_poor_selfies_are_refused_with_a_reason() -> None:
    assert selfie_refusal([], None).code == "no_face"
    assert selfie_refusal([240.0, 200.0], 40.0).code == "several_faces"
    assert selfie_refusal([45.0], 40.0).code == "face_too_small"
    blurred = selfie_refusal([240.0], 3.0)
    assert blurred.code == "selfie_blurred" and "blurred" in blurred.message


def test_sharpness_falls_when_the_face_is_blurred() -> None:
    rng = np.random.default_rng(0)
    face = cv2.resize(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), (300, 300), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(face, (0, 0), 8)
    assert face_sharpness(face, 0, 0, 300, 300) > 6.0 > face_sharpness(blurred, 0, 0, 300, 300)
