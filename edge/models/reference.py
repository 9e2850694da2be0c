"""A numpy forward pass of the parsed dlib network: the oracle the converted .tflite is tested against.

It follows dlib's semantics literally: cross-correlation convolutions with dlib's padding (none for
strided layers, half the kernel otherwise), pooling without padding and floor-sized outputs, and
``add_prev`` of tensors of different shapes producing the larger shape with the missing values
taken as zero (top-left aligned).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge.models.dlib_format import Layer


def normalise_chip(chip_rgb: np.ndarray, means: tuple[float, float, float]) -> np.ndarray:
    """dlib's input layer: (pixel - channel mean) / 256, RGB order, as float32 HWC."""
    out: np.ndarray = (chip_rgb.astype(np.float32) - np.asarray(means, np.float32)) / np.float32(256.0)
    return out.astype(np.float32)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    # x: HWC, w: (out, in, kh, kw)
    if pad:
        x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = w.shape[2], w.shape[3]
    win = sliding_window_view(x, (kh, kw), axis=(0, 1))[::stride, ::stride]  # H', W', C, kh, kw
    out: np.ndarray = np.tensordot(win, w, axes=([2, 3, 4], [1, 2, 3])) + b
    return out.astype(np.float32)


def _pool(x: np.ndarray, k: int, stride: int, op: str) -> np.ndarray:
    win = sliding_window_view(x, (k, k), axis=(0, 1))[::stride, ::stride]
    out = win.max(axis=(3, 4)) if op == "max" else win.mean(axis=(3, 4), dtype=np.float32)
    return np.asarray(out, np.float32)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


def forward(layers: list[Layer], chip_rgb: np.ndarray) -> np.ndarray:
    """The 128-d descriptor (not normalised) for one 150x150 RGB uint8 chip."""
    x = normalise_chip(chip_rgb, layers[0].means)
    tags: dict[int, np.ndarray] = {}
    for layer in layers[1:]:
        if layer.kind == "con":
            assert layer.weights is not None
            assert layer.bias is not None
            x = _conv(x, layer.weights, layer.bias, layer.stride, layer.padding)
        elif layer.kind == "affine":
            assert layer.gamma is not None
            assert layer.beta is not None
            x = x * layer.gamma.reshape(-1) + layer.beta.reshape(-1)
        elif layer.kind == "relu":
            x = np.maximum(x, 0)
        elif layer.kind == "max_pool":
            x = _pool(x, layer.size[0], layer.stride, "max")
        elif layer.kind == "avg_pool":
            x = _pool(x, layer.size[0], layer.stride, "avg")
        elif layer.kind == "avg_pool_everything":
            x = x.mean(axis=(0, 1), dtype=np.float32)
        elif layer.kind == "tag":
            tags[layer.tag] = x
        elif layer.kind == "skip":
            x = tags[layer.tag]
        elif layer.kind == "add_prev":
            x = _add(x, tags[layer.tag])
        elif layer.kind == "fc":
            assert layer.weights is not None
            x = x.reshape(-1) @ layer.weights
        else:
            raise AssertionError(layer.kind)
    return np.asarray(x, np.float32).reshape(-1)
