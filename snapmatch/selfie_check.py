"""Whether a selfie (or another reference photo) is good enough to match on: a pure decision.

A poor reference photo is refused with a reason the attendee can act on, instead of silently
matching badly: no face, several faces of similar size (which one is you?), a tiny face, a blurred
face. Thresholds measured on the faces-dev photos (README, matching section).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Below this width (pixels in the original) the descriptor is too vague to match on.
MIN_FACE_PX = 60
# Another face at least this fraction of the biggest face's width makes the photo ambiguous. In a
# selfie the attendee's face is the nearest, so clearly the biggest: faces-dev portraits with someone
# behind (second face 0.64-0.69 as wide) are kept; two faces of about one size (0.84-0.93) are not.
SEVERAL_FACES_RATIO = 0.8
# Variance of the Laplacian of the face, resized to 150 px: faces-dev selfies measure 15 and more,
# the same faces blurred (Gaussian, sigma 4 px per 150 px of face) 2.6-4.5.
MIN_FACE_SHARPNESS = 6.0


@dataclass(frozen=True)
class SelfieRefusal:
    code: str
    message: str


def face_sharpness(bgr: np.ndarray, left: int, top: int, width: int, height: int) -> float:
    """Variance of the Laplacian of the face box, resized to 150 px (comparable across sizes)."""
    crop = bgr[max(0, top) : top + height, max(0, left) : left + width]
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (150, 150), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def selfie_refusal(face_widths: list[float], sharpness: float | None) -> SelfieRefusal | None:
    """``face_widths``: every face found, in the original's pixels, biggest first (empty: none)."""
    if not face_widths:
        return SelfieRefusal("no_face", "No face was found in the selfie: take one facing the camera, in good light.")
    main = face_widths[0]
    if any(w >= SEVERAL_FACES_RATIO * main for w in face_widths[1:]):
        return SelfieRefusal(
            "several_faces", "Several faces are in the photo: take a selfie with only your face in it."
        )
    if main < MIN_FACE_PX:
        return SelfieRefusal("face_too_small", "Your face is too small in the photo: hold the camera closer.")
    if sharpness is not None and sharpness < MIN_FACE_SHARPNESS:
        return SelfieRefusal("selfie_blurred", "The selfie is blurred: hold still, in good light, and take it again.")
    return None
