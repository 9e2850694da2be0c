"""MiniFASNet (V2 and V1SE) passive face-liveness networks: parse, reference forward, TFLite export.

The network is read from the layer names and shapes its state dictionary carries
(:mod:`edge.models.pth`); nothing of the original training code is used. The blocks:

- ``conv1`` 3x3 stride-2 convolution, ``conv2_dw`` 3x3 depthwise; each followed by batch norm and
  PReLU (a "conv block"; a "linear block" has no PReLU);
- ``conv_23``, ``conv_34``, ``conv_45``: a 1x1 conv block, a 3x3 stride-2 depthwise conv block and
  a 1x1 linear projection (the spatial size halves);
- ``conv_3``, ``conv_4``, ``conv_5``: residual groups of the same three blocks at stride 1, the input
  added to the projection; in V1SE the last block of each group scales the projection's channels
  by a squeeze-excitation gate (global mean, 1x1 conv + batch norm + ReLU, 1x1 conv + batch norm,
  sigmoid) before the addition;
- ``conv_6_sep`` 1x1 conv block to 512 channels, ``conv_6_dw`` 5x5 depthwise linear block over the
  whole 5x5 map, then ``linear`` (512->128), batch norm and ``prob`` (128->3). With no non-linearity
  between them (dropout is off at inference) the last three fold into one 512->3 layer here.

Input: the 80x80 crop around the face (:func:`edge.vision.pad.crop`), BGR, float values 0..255,
NHWC ``[1, 80, 80, 3]``. Output: three logits; the softmax's class 1 is "live". Batch norms are
folded into the preceding convolution (epsilon 1e-5). Every padded stride-2 convolution gets an
explicit PAD (TFLite's SAME pads the other side for even inputs).

``int8``: the 1x1/3x3 convolution and the fully connected weights are int8 with one scale per
output channel (dynamic-range quantisation, activations float); the depthwise weights stay float32
(a few thousand values; the runtime's hybrid depthwise kernels are not on every TFLite build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.errors import ModelError
from edge.models import tflite_writer as tw

Variant = Literal["float32", "int8"]
Activation = Literal["none", "prelu", "relu"]
INPUT_SIZE = 80
BN_EPS = 1e-5
LIVE_CLASS = 1


@dataclass(frozen=True)
class Conv:
    """A convolution with its batch norm folded in, and its activation."""

    name: str
    weight: np.ndarray  # (out, in / groups, kh, kw) float64
    bias: np.ndarray  # (out,) float64
    stride: int
    pad: int
    depthwise: bool
    act: Activation
    alpha: np.ndarray | None = None  # PReLU slopes (out,)


@dataclass(frozen=True)
class Residual:
    body: tuple[Conv, ...]
    squeeze: tuple[Conv, Conv] | None  # SE gate: fc1 (ReLU), fc2 (then sigmoid)


Layer = Conv | Residual


@dataclass(frozen=True)
class Network:
    name: str
    layers: tuple[Layer, ...]
    fc_weight: np.ndarray  # (3, 512) float64: linear, its batch norm and prob folded
    fc_bias: np.ndarray  # (3,)


class _Weights:
    def __init__(self, state: dict[str, np.ndarray], what: str) -> None:
        self.state = {k.removeprefix("module."): v for k, v in state.items()}
        self.what = what

    def get(self, key: str) -> np.ndarray:
        try:
            return self.state[key].astype(np.float64)
        except KeyError:
            raise ModelError(f"{self.what}: no tensor {key!r}; not a MiniFASNet state dictionary") from None

    def has(self, key: str) -> bool:
        return key in self.state

    def bn(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta = self.get(f"{prefix}.weight"), self.get(f"{prefix}.bias")
        mean, var = self.get(f"{prefix}.running_mean"), self.get(f"{prefix}.running_var")
        scale = gamma / np.sqrt(var + BN_EPS)
        return scale, beta - mean * scale

    def conv(self, prefix: str, stride: int, act: Activation, *, conv_key: str = "conv", bn_key: str = "bn") -> Conv:
        w = self.get(f"{prefix}.{conv_key}.weight")
        scale, shift = self.bn(f"{prefix}.{bn_key}")
        bias = shift + (scale * self.get(f"{prefix}.{conv_key}.bias") if self.has(f"{prefix}.{conv_key}.bias") else 0.0)
        depthwise = w.shape[1] == 1 and prefix.endswith("dw")
        pad = w.shape[2] // 2 if w.shape[2] == 3 else 0
        alpha = self.get(f"{prefix}.prelu.weight") if act == "prelu" else None
        return Conv(prefix, w * scale[:, None, None, None], bias, stride, pad, depthwise, act, alpha)


def _block(ws: _Weights, prefix: str, stride: int) -> tuple[Conv, ...]:
    return (
        ws.conv(f"{prefix}.conv", 1, "prelu"),
        ws.conv(f"{prefix}.conv_dw", stride, "prelu"),
        ws.conv(f"{prefix}.project", 1, "none"),
    )


def parse(state: dict[str, np.ndarray], name: str) -> Network:
    """The network held by a MiniFASNet state dictionary (V2 or V1SE, told apart by its SE tensors)."""
    ws = _Weights(state, name)
    layers: list[Layer] = [ws.conv("conv1", 2, "prelu"), ws.conv("conv2_dw", 1, "prelu")]
    for down, group in (("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5")):
        layers.extend(_block(ws, down, 2))
        i = 0
        while ws.has(f"{group}.model.{i}.conv.conv.weight"):
            prefix = f"{group}.model.{i}"
            squeeze = None
            if ws.has(f"{prefix}.se_module.fc1.weight"):
                squeeze = (
                    ws.conv(f"{prefix}.se_module", 1, "relu", conv_key="fc1", bn_key="bn1"),
                    ws.conv(f"{prefix}.se_module", 1, "none", conv_key="fc2", bn_key="bn2"),
                )
            layers.append(Residual(_block(ws, prefix, 1), squeeze))
            i += 1
        if i == 0:
            raise ModelError(f"{name}: residual group {group} is empty; not a MiniFASNet state dictionary")
    layers.append(ws.conv("conv_6_sep", 1, "prelu"))
    layers.append(ws.conv("conv_6_dw", 1, "none"))
    w1 = ws.get("linear.weight")
    scale, shift = ws.bn("bn")
    w1, b1 = w1 * scale[:, None], shift
    prob = ws.get("prob.weight")
    fc_w = prob @ w1
    fc_b = prob @ b1 + (ws.get("prob.bias") if ws.has("prob.bias") else 0.0)
    return Network(name, tuple(layers), fc_w, fc_b)


def load(path: object) -> Network:
    """Parse the state dictionary file at ``path``."""
    from pathlib import Path

    from edge.models.pth import read_state_dict

    p = Path(str(path))
    return parse(read_state_dict(p), p.name)


# =========================================================================== numpy reference


def _conv_ref(x: np.ndarray, c: Conv) -> np.ndarray:
    """``x`` (C, H, W) float64 -> (out, H', W')."""
    k = c.weight.shape[2]
    xp = np.pad(x, ((0, 0), (c.pad, c.pad), (c.pad, c.pad))) if c.pad else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, :: c.stride, :: c.stride]
    y = np.einsum("chwij,cij->chw", win, c.weight[:, 0]) if c.depthwise else np.einsum("chwij,ocij->ohw", win, c.weight)
    y = y + c.bias[:, None, None]
    if c.act == "prelu":
        assert c.alpha is not None
        y = np.where(y > 0, y, y * c.alpha[:, None, None])
    elif c.act == "relu":
        y = np.maximum(y, 0.0)
    return np.asarray(y)


def reference_logits(net: Network, crop_bgr: np.ndarray) -> np.ndarray:
    """The network's three logits for one 80x80x3 BGR crop, in float64 numpy (slow; for tests)."""
    if crop_bgr.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"MiniFASNet wants an {INPUT_SIZE}x{INPUT_SIZE}x3 crop, not {crop_bgr.shape}")
    x = np.transpose(crop_bgr.astype(np.float64), (2, 0, 1))
    for layer in net.layers:
        if isinstance(layer, Conv):
            x = _conv_ref(x, layer)
            continue
        y = x
        for c in layer.body:
            y = _conv_ref(y, c)
        if layer.squeeze is not None:
            g = y.mean(axis=(1, 2), keepdims=True)
            g = _conv_ref(_conv_ref(g, layer.squeeze[0]), layer.squeeze[1])
            y = y * (1.0 / (1.0 + np.exp(-g)))
        x = x + y
    return np.asarray(net.fc_weight @ x.reshape(-1) + net.fc_bias)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64) - np.max(logits)
    e = np.exp(z)
    return np.asarray(e / e.sum())


# =========================================================================== TFLite export


def _quantise(w: np.ndarray) -> tuple[np.ndarray, list[float]]:
    flat = w.reshape(w.shape[0], -1)
    peak = np.abs(flat).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8).reshape(w.shape)
    return q, [float(s) for s in scale]


class _Exporter:
    def __init__(self, variant: Variant) -> None:
        self.g = tw.Graph()
        self.variant = variant

    def conv(self, x: int, c: Conv) -> int:
        g = self.g
        _, h, w, cin = g.shape(x)
        k = c.weight.shape[2]
        out = c.weight.shape[0]
        if c.pad and c.stride == 1 and k == 2 * c.pad + 1:
            padding = tw.SAME
            oh, ow = h, w
        else:
            if c.pad:
                pads = np.array([[0, 0], [c.pad, c.pad], [c.pad, c.pad], [0, 0]], np.int32)
                pt = g.constant(pads, f"{c.name}/paddings", tw.INT32)
                h, w = h + 2 * c.pad, w + 2 * c.pad
                x = g.op(tw.OP_PAD, [x, pt], (1, h, w, cin), f"{c.name}/pad", tw.OPT_PAD, {})
            padding = tw.VALID
            oh, ow = (h - k) // c.stride + 1, (w - k) // c.stride + 1
        act = tw.ACT_RELU if c.act == "relu" else tw.ACT_NONE
        bias = g.constant(c.bias.astype(np.float32), f"{c.name}/bias")
        if c.depthwise:
            wt = g.constant(np.transpose(c.weight, (1, 2, 3, 0)).astype(np.float32), f"{c.name}/weights")
            opts = {0: ("b", padding), 1: ("i", c.stride), 2: ("i", c.stride), 3: ("i", 1), 4: ("b", act)}
            y = g.op(tw.OP_DEPTHWISE_CONV_2D, [x, wt, bias], (1, oh, ow, out), c.name, tw.OPT_DEPTHWISE_CONV2D, opts)
        else:
            w_tfl = np.transpose(c.weight, (0, 2, 3, 1)).astype(np.float32)
            if self.variant == "int8":
                q, scales = _quantise(w_tfl)
                wt = g.constant(q, f"{c.name}/weights", tw.INT8, scales)
            else:
                wt = g.constant(w_tfl, f"{c.name}/weights")
            opts = {0: ("b", padding), 1: ("i", c.stride), 2: ("i", c.stride), 3: ("b", act)}
            version = 5 if self.variant == "int8" else 1
            y = g.op(tw.OP_CONV_2D, [x, wt, bias], (1, oh, ow, out), c.name, tw.OPT_CONV2D, opts, version=version)
        if c.act == "prelu":
            assert c.alpha is not None
            alpha = g.constant(c.alpha.reshape(1, 1, -1).astype(np.float32), f"{c.name}/alpha")
            y = g.op(tw.OP_PRELU, [y, alpha], (1, oh, ow, out), f"{c.name}/prelu")
        return y

    def residual(self, x: int, r: Residual, i: int) -> int:
        g = self.g
        y = x
        for c in r.body:
            y = self.conv(y, c)
        if r.squeeze is not None:
            shape = g.shape(y)
            axes = g.constant(np.array([1, 2], np.int32), f"se{i}/axes", tw.INT32)
            m = g.op(tw.OP_MEAN, [y, axes], (1, 1, 1, shape[3]), f"se{i}/mean", tw.OPT_REDUCER, {0: ("b", 1)})
            m = self.conv(self.conv(m, r.squeeze[0]), r.squeeze[1])
            s = g.op(tw.OP_LOGISTIC, [m], g.shape(m), f"se{i}/sigmoid")
            y = g.op(tw.OP_MUL, [y, s], shape, f"se{i}/scale", tw.OPT_MUL, {0: ("b", tw.ACT_NONE)})
        return self.g.op(tw.OP_ADD, [x, y], g.shape(x), f"residual{i}", tw.OPT_ADD, {0: ("b", tw.ACT_NONE)})

    def export(self, net: Network) -> bytes:
        g = self.g
        x = g.activation((1, INPUT_SIZE, INPUT_SIZE, 3), "crop_bgr")
        g.inputs = [x]
        for i, layer in enumerate(net.layers):
            x = self.conv(x, layer) if isinstance(layer, Conv) else self.residual(x, layer, i)
        fc = np.ascontiguousarray(net.fc_weight.astype(np.float32))
        if self.variant == "int8":
            q, scales = _quantise(fc)
            wt = g.constant(q, "head/weights", tw.INT8, scales)
        else:
            wt = g.constant(fc, "head/weights")
        bt = g.constant(net.fc_bias.astype(np.float32), "head/bias")
        x = g.op(
            tw.OP_FULLY_CONNECTED,
            [x, wt, bt],
            (1, fc.shape[0]),
            "logits",
            tw.OPT_FULLY_CONNECTED,
            {0: ("b", tw.ACT_NONE)},
            version=3 if self.variant == "int8" else 1,
        )
        g.outputs = [x]
        return g.serialise(f"{net.name} (MiniFASNet, Apache-2.0) converted by gate-edge ({self.variant})")


def to_tflite(net: Network, variant: Variant = "float32") -> bytes:
    """The .tflite flatbuffer of ``net``: input [1,80,80,3] BGR 0..255 float32, output [1,3] logits."""
    return _Exporter(variant).export(net)
