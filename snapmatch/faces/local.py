"""Local face engine: dlib HOG detector + 5-point landmarks + 128-d ResNet descriptor, no network.

Models come from the ``face-recognition-models`` package and are loaded once per process. The
descriptor network is dlib's, run through numpy's BLAS (``snapmatch.faces.resnet``: same weights,
same output, ~6x less CPU than the BLAS-less dlib-bin wheel); dlib's own encoder is the fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import cv2
import dlib
import face_recognition_models
import numpy as np
from threadpoolctl import threadpool_limits

from snapmatch.faces import DetectedFace
from snapmatch.faces.resnet import FaceDescriptorNet, ModelFormatError

log = logging.getLogger(__name__)

# dlib's frontal HOG detector reliably finds faces whose box is at least this wide in the image
# it scans (measured: 58-60 px found, 50-54 px missed). Scale the image so the smallest face we
# commit to (FACE_MIN_SIZE in the original) lands at this size, instead of upsampling a small copy.
HOG_MIN_FACE_PX = 58
# A selfie's face is big; a reduced copy keeps detection fast.
SELFIE_MAX_SIDE = 1200
# Largest difference from dlib's own descriptor accepted at start-up (measured: ~3e-7).
PROBE_TOLERANCE = 1e-4

# Descriptors of BGR 150 px chips -> (n, 128).
Encoder = Callable[[Sequence[np.ndarray]], np.ndarray]

_models_lock = threading.Lock()
_models: tuple[object, object, Encoder] | None = None


def _dlib_encoder(path: str) -> Encoder:
    model = dlib.face_recognition_model_v1(path)

    def encode(chips: Sequence[np.ndarray]) -> np.ndarray:
        rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in chips]
        return np.asarray(model.compute_face_descriptor(rgb), dtype=np.float32).reshape(len(rgb), -1)

    return encode


def _load_encoder() -> Encoder:
    path = face_recognition_models.face_recognition_model_location()
    try:
        net = FaceDescriptorNet(path)
    except ModelFormatError as exc:
        log.warning("using dlib's slower descriptor: %s cannot be read by snapmatch.faces.resnet (%s)", path, exc)
        return _dlib_encoder(path)
    # One worker process per core is how this service scales; BLAS threads inside each would only
    # contend with the other workers (and cost CPU spinning), so the descriptor runs on one thread.
    threadpool_limits(limits=1, user_api="blas")

    def encode(chips: Sequence[np.ndarray]) -> np.ndarray:
        return net(np.stack(chips), bgr=True)

    # Once per process (~0.2 s): the network must give dlib's own descriptor, or it is not used.
    probe = [np.random.default_rng(0).integers(0, 256, size=(150, 150, 3), dtype=np.uint8)]
    dlib_encode = _dlib_encoder(path)
    difference = float(np.abs(encode(probe) - dlib_encode(probe)).max())
    if difference > PROBE_TOLERANCE:
        log.warning("using dlib's slower descriptor: snapmatch.faces.resnet differs from it by %.2g", difference)
        return dlib_encode
    return encode


def _load_models() -> tuple[object, object, Encoder]:
    global _models
    with _models_lock:
        if _models is None:
            detector = dlib.get_frontal_face_detector()
            shape_predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
            _models = (detector, shape_predictor, _load_encoder())
    return _models


class LocalFaceEngine:
    """dlib-based engine. Construct once per worker process; ``detect`` is the per-photo call."""

    name = "local"

    def __init__(self, min_face_px: int = 60, max_detect_pixels: int = 26_000_000) -> None:
        self.min_face_px = max(1, min_face_px)
        self.max_detect_pixels = max_detect_pixels
        self._detector, self._shape_predictor, self._encoder = _load_models()

    def detection_scale(self, height: int, width: int) -> float:
        """Scale at which ``min_face_px`` faces of the original become just detectable."""
        scale = min(1.0, HOG_MIN_FACE_PX / self.min_face_px)
        pixels = height * width * scale * scale
        if pixels > self.max_detect_pixels:
            scale *= (self.max_detect_pixels / pixels) ** 0.5
        return scale

    def _boxes(self, gray: np.ndarray, scale: float, upsample: int = 0) -> list[tuple[dlib.rectangle, float]]:
        if scale < 0.999:
            h, w = gray.shape[:2]
            # A mild shrink (the usual 58/60) is a near 1:1 resample: bilinear has nothing to alias and
            # costs 9 ms on 12 MP where area averaging costs 60 ms. Stronger shrinks keep INTER_AREA.
            interpolation = cv2.INTER_LINEAR if scale >= 0.75 else cv2.INTER_AREA
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)
        rects, scores, _ = self._detector.run(gray, upsample, 0.0)
        out = []
        for rect, score in zip(rects, scores, strict=True):
            if scale < 0.999:
                rect = dlib.rectangle(
                    round(rect.left() / scale),
                    round(rect.top() / scale),
                    round(rect.right() / scale),
                    round(rect.bottom() / scale),
                )
            out.append((rect, float(score)))
        return out

    def _describe(self, bgr: np.ndarray, boxes: list[tuple[dlib.rectangle, float]]) -> list[DetectedFace]:
        if not boxes:
            return []
        # dlib's landmark model reads the mean of the three channels, so BGR gives exactly the RGB
        # landmarks; the encoder takes the 150 px chips as BGR, the full photo is never converted.
        shapes = dlib.full_object_detections([self._shape_predictor(bgr, rect) for rect, _ in boxes])
        chips = dlib.get_face_chips(bgr, shapes, size=150, padding=0.25)
        descriptors = self._encoder(chips)
        h, w = bgr.shape[:2]
        faces = []
        for (rect, score), desc in zip(boxes, descriptors, strict=True):
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(w, rect.right()), min(h, rect.bottom())
            faces.append(
                DetectedFace(
                    left=left,
                    top=top,
                    width=max(0, right - left),
                    height=max(0, bottom - top),
                    embedding=np.asarray(desc, dtype=np.float32),
                    score=score,
                )
            )
        return faces

    def detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        bgr = np.ascontiguousarray(bgr)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        boxes = self._boxes(gray, self.detection_scale(*gray.shape[:2]))
        return self._describe(bgr, boxes)

    def detect_selfie(self, bgr: np.ndarray) -> DetectedFace | None:
        return self.detect_selfie_faces(bgr)[0]

    def detect_selfie_faces(self, bgr: np.ndarray) -> tuple[DetectedFace | None, list[int]]:
        """The selfie's main face (the largest, described) and the widths of every face found,
        largest first (to refuse a selfie in which several people are about as big)."""
        bgr = np.ascontiguousarray(bgr)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, SELFIE_MAX_SIDE / max(gray.shape[:2]))
        found = self._boxes(gray, scale, upsample=1)
        if not found:
            # A face that fills the frame (a tight crop) can escape the upsampled scan; an event photo's
            # scan finds it, and a selfie must be at least as findable as the same photo in an event.
            found = self._boxes(gray, self.detection_scale(*gray.shape[:2]))
        boxes = sorted(found, key=lambda b: -b[0].width() * b[0].height())
        if not boxes:
            return None, []
        return self._describe(bgr, boxes[:1])[0], [b[0].width() for b in boxes]
