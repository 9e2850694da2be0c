"""Convert the parsed dlib ResNet into a .tflite model (float32 or dynamic-range int8).

Each dlib ``con`` + ``affine`` pair becomes one CONV_2D with the affine folded into its weights and
bias, and a following ReLU fused. ``add_prev`` becomes ADD (with a fused ReLU where dlib applies one
next); where dlib adds tensors of different shapes (zero-filled to the larger one) a PAD is inserted
first. The input is the normalised chip (see :func:`edge.models.reference.normalise_chip`), NHWC
``[1, 150, 150, 3]`` float32 RGB; the output is the raw 128-d descriptor ``[1, 128]``.

The int8 variant stores convolution weights as int8 with one symmetric scale per output channel and
the fully connected weights with one scale; activations stay float ("dynamic range" or hybrid
quantisation), which the TFLite kernels evaluate with on-the-fly input quantisation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge.models import tflite_writer as tw
from edge.models.dlib_format import Layer

Variant = Literal["float32", "int8"]


def _quantise(w: np.ndarray, per_channel: bool) -> tuple[np.ndarray, list[float]]:
    flat = w.reshape(w.shape[0], -1)
    peak = np.abs(flat).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(flat).max())
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8).reshape(w.shape)
    return q, [float(s) for s in (scale if per_channel else scale[:1])]


def to_tflite(layers: list[Layer], variant: Variant = "float32") -> bytes:
    """Build the .tflite flatbuffer for the parsed network."""
    g = tw.Graph()
    x = g.activation((1, 150, 150, 3), "chip")
    g.inputs = [x]
    tags: dict[int, int] = {}
    i = 1
    n_conv = 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind == "con":
            assert layer.weights is not None
            assert layer.bias is not None
            w = layer.weights.astype(np.float64)  # (out, in, kh, kw)
            bias = layer.bias.reshape(-1).astype(np.float64)
            nxt = layers[i + 1]
            if nxt.kind == "affine":
                assert nxt.gamma is not None
                assert nxt.beta is not None
                gamma = nxt.gamma.reshape(-1).astype(np.float64)
                w = w * gamma[:, None, None, None]
                bias = bias * gamma + nxt.beta.reshape(-1)
                i += 1
            relu = i + 1 < len(layers) and layers[i + 1].kind == "relu"
            if relu:
                i += 1
            w_tfl = np.transpose(w, (0, 2, 3, 1)).astype(np.float32)  # (out, kh, kw, in)
            n_conv += 1
            if variant == "int8":
                q, scales = _quantise(w_tfl, per_channel=True)
                wt = g.constant(q, f"conv{n_conv}/weights", tw.INT8, scales)
            else:
                wt = g.constant(w_tfl, f"conv{n_conv}/weights")
            bt = g.constant(bias.astype(np.float32), f"conv{n_conv}/bias")
            _, h, wd, _ = g.shape(x)
            k = layer.size[0]
            s = layer.stride
            if layer.padding == 0:
                pad, oh, ow = tw.VALID, (h - k) // s + 1, (wd - k) // s + 1
            elif s == 1 and layer.padding == k // 2:
                pad, oh, ow = tw.SAME, h, wd
            else:
                raise ValueError(f"unsupported convolution padding {layer.padding} with stride {s}")
            opts = {0: ("b", pad), 1: ("i", s), 2: ("i", s), 3: ("b", tw.ACT_RELU if relu else tw.ACT_NONE)}
            x = g.op(
                tw.OP_CONV_2D,
                [x, wt, bt],
                (1, oh, ow, w.shape[0]),
                f"conv{n_conv}",
                tw.OPT_CONV2D,
                opts,
                version=5 if variant == "int8" else 1,
            )
        elif layer.kind in ("max_pool", "avg_pool"):
            _, h, wd, c = g.shape(x)
            k, s = layer.size[0], layer.stride
            opts = {0: ("b", tw.VALID), 1: ("i", s), 2: ("i", s), 3: ("i", k), 4: ("i", k), 5: ("b", tw.ACT_NONE)}
            code = tw.OP_MAX_POOL_2D if layer.kind == "max_pool" else tw.OP_AVERAGE_POOL_2D
            x = g.op(code, [x], (1, (h - k) // s + 1, (wd - k) // s + 1, c), f"{layer.kind}{i}", tw.OPT_POOL2D, opts)
        elif layer.kind == "tag":
            tags[layer.tag] = x
        elif layer.kind == "skip":
            x = tags[layer.tag]
        elif layer.kind == "add_prev":
            other = tags[layer.tag]
            target = tuple(max(p, q) for p, q in zip(g.shape(x), g.shape(other), strict=True))
            operands = []
            for side, t in enumerate((x, other)):
                shape = g.shape(t)
                if shape == target:
                    operands.append(t)
                    continue
                pads = np.array([[0, a - b] for a, b in zip(target, shape, strict=True)], np.int32)
                pt = g.constant(pads, f"pad{i}_{side}/paddings", tw.INT32)
                operands.append(g.op(tw.OP_PAD, [t, pt], target, f"pad{i}_{side}", tw.OPT_PAD, {}))
            relu = i + 1 < len(layers) and layers[i + 1].kind == "relu"
            if relu:
                i += 1
            x = g.op(
                tw.OP_ADD, operands, target, f"add{i}", tw.OPT_ADD, {0: ("b", tw.ACT_RELU if relu else tw.ACT_NONE)}
            )
        elif layer.kind == "avg_pool_everything":
            axes = g.constant(np.array([1, 2], np.int32), "mean/axes", tw.INT32)
            x = g.op(tw.OP_MEAN, [x, axes], (1, g.shape(x)[3]), "mean", tw.OPT_REDUCER, {0: ("b", 0)})
        elif layer.kind == "fc":
            assert layer.weights is not None
            w_fc = np.ascontiguousarray(layer.weights.T.astype(np.float32))  # (out, in)
            if variant == "int8":
                q, scales = _quantise(w_fc, per_channel=False)
                wt = g.constant(q, "fc/weights", tw.INT8, scales)
            else:
                wt = g.constant(w_fc, "fc/weights")
            x = g.op(
                tw.OP_FULLY_CONNECTED,
                [x, wt, -1],
                (1, w_fc.shape[0]),
                "descriptor",
                tw.OPT_FULLY_CONNECTED,
                {0: ("b", tw.ACT_NONE)},
                version=3 if variant == "int8" else 1,
            )
        elif layer.kind == "relu":
            raise ValueError(f"unfused ReLU at layer {i}")
        else:
            raise ValueError(f"unsupported layer {layer.kind} at {i}")
        i += 1
    g.outputs = [x]
    return g.serialise(f"dlib_face_recognition_resnet_model_v1 converted by gate-edge ({variant})")
