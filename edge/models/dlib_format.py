"""Reader for dlib's serialisation of the ResNet face descriptor network (numpy only, no dlib).

dlib writes a network as nested layers, innermost first: every ``add_layer`` serialises its
sub-network before its own details. Integers use dlib's variable-length format (a control byte
holding the sign and the byte count, then little-endian bytes), strings are an integer length
followed by bytes, bools are the ASCII bytes ``'0'``/``'1'``, floats are a mantissa and an exponent
(both integers), and tensors are a version, four dimensions and raw little-endian float32 data.

The layer stack is not self-describing (a tag and a skip layer serialise identically), so this
module parses against the architecture of ``dlib_face_recognition_resnet_model_v1.dat`` as
published in dlib's ``dnn_face_recognition_ex.cpp`` and checks every layer name, kernel size and
stride it reads against that architecture. A file of another shape is refused with the offset
where it differed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.errors import ModelError

#: dlib's input layer for this network subtracts these means and divides by 256 (RGB order).
INPUT_MEANS_RGB = (122.782, 117.001, 104.298)


@dataclass
class Layer:
    """One layer of the network in forward (input to output) order."""

    kind: str  # input, con, affine, relu, max_pool, avg_pool, avg_pool_everything, tag, skip, add_prev, fc
    tag: int = 0  # for tag/skip/add_prev
    size: tuple[int, int] = (0, 0)  # kernel (con, pools)
    stride: int = 1
    padding: int = 0
    weights: np.ndarray | None = None  # con: (out, in, kh, kw); fc: (in, out)
    bias: np.ndarray | None = None  # con: (out,)
    gamma: np.ndarray | None = None  # affine
    beta: np.ndarray | None = None  # affine
    means: tuple[float, float, float] = field(default=INPUT_MEANS_RGB)


def architecture() -> list[tuple[str, int, int, int]]:
    """The network from output to input as (kind, filters-or-tag, kernel, stride), dlib's nesting order."""
    arch: list[tuple[str, int, int, int]] = [("fc", 128, 0, 0), ("avg_pool_everything", 0, 0, 0)]

    def block(n: int, stride: int) -> list[tuple[str, int, int, int]]:
        return [("affine", 0, 0, 0), ("con", n, 3, 1), ("relu", 0, 0, 0), ("affine", 0, 0, 0), ("con", n, 3, stride)]

    def ares(n: int) -> list[tuple[str, int, int, int]]:
        return [("relu", 0, 0, 0), ("add_prev", 1, 0, 0), *block(n, 1), ("tag", 1, 0, 0)]

    def ares_down(n: int) -> list[tuple[str, int, int, int]]:
        return [
            ("relu", 0, 0, 0),
            ("add_prev", 2, 0, 0),
            ("avg_pool", 0, 2, 2),
            ("skip", 1, 0, 0),
            ("tag", 2, 0, 0),
            *block(n, 2),
            ("tag", 1, 0, 0),
        ]

    arch += ares_down(256)
    arch += ares(256) + ares(256) + ares_down(256)
    arch += ares(128) + ares(128) + ares_down(128)
    arch += ares(64) + ares(64) + ares(64) + ares_down(64)
    arch += ares(32) + ares(32) + ares(32)
    arch += [("max_pool", 0, 3, 2), ("relu", 0, 0, 0), ("affine", 0, 0, 0), ("con", 32, 7, 2), ("input", 150, 0, 0)]
    return arch


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> ModelError:
        return ModelError(
            f"dlib model file: {what} at byte {self.pos}",
            hint="the file is not dlib_face_recognition_resnet_model_v1.dat; rebuild with `edge models build`",
        )

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"truncated (wanted {n} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def f(self) -> float:
        mantissa = self.i()
        exponent = self.i()
        return math.ldexp(mantissa, exponent)

    def b(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def s(self) -> str:
        n = self.i()
        if n < 0 or n > 256:
            raise self.fail(f"implausible string length {n}")
        return self.take(n).decode("ascii", errors="replace")

    def tensor(self) -> np.ndarray:
        if self.i() != 2:
            raise self.fail("unknown tensor version")
        dims = [self.i() for _ in range(4)]
        count = int(np.prod(dims))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(dims).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        if self.i() != 1:
            raise self.fail("unknown alias_tensor version")
        n, k, r, c = (self.i() for _ in range(4))
        return n, k, r, c

    def expect(self, *names: str) -> str:
        start = self.pos
        name = self.s()
        if name not in names:
            self.pos = start
            raise self.fail(f"expected layer {'/'.join(names)}, found {name!r}")
        return name


def _con(r: _Reader, filters: int, kernel: int, stride: int) -> Layer:
    r.expect("con_4", "con_5", "con_6")
    params = r.tensor().reshape(-1)
    num_filters = r.i()
    nr, nc, sy, sx, py, px = (r.i() for _ in range(6))
    f_shape = r.alias()
    b_shape = r.alias()
    for _ in range(4):
        r.f()  # learning-rate and weight-decay multipliers
    if (num_filters, nr, nc, sy, sx) != (filters, kernel, kernel, stride, stride) or py != px:
        raise r.fail(
            f"convolution {num_filters}x{nr}x{nc}/{sy} where {filters}x{kernel}x{kernel}/{stride} was expected"
        )
    n_f = int(np.prod(f_shape))
    n_b = int(np.prod(b_shape))
    if params.size != n_f + n_b:
        raise r.fail("convolution parameter count does not match its shape")
    weights = params[:n_f].reshape(f_shape[0], f_shape[1], f_shape[2], f_shape[3])
    return Layer("con", size=(nr, nc), stride=sy, padding=py, weights=weights, bias=params[n_f:].copy())


def _affine(r: _Reader) -> Layer:
    name = r.expect("affine_", "affine_2", "bn_con2")
    params = r.tensor().reshape(-1)
    g_shape = r.alias()
    b_shape = r.alias()
    n_g = int(np.prod(g_shape))
    if name == "bn_con2":
        _means, _invstds = r.tensor(), r.tensor()
        running_means = r.tensor().reshape(-1)
        running_vars = r.tensor().reshape(-1)
        r.i()  # num_updates
        r.i()  # running_stats_window_size
        for _ in range(4):
            r.f()
        eps = r.f()
        gamma = params[:n_g] / np.sqrt(running_vars + eps)
        beta = params[n_g:] - gamma * running_means
        return Layer("affine", gamma=gamma.astype(np.float32), beta=beta.astype(np.float32))
    r.i()  # mode
    if name == "affine_2" and r.b():
        raise r.fail("disabled affine layer")
    if params.size != n_g + int(np.prod(b_shape)):
        raise r.fail("affine parameter count does not match its shape")
    return Layer("affine", gamma=params[:n_g].copy(), beta=params[n_g:].copy())


def _details(r: _Reader, kind: str, a: int, kernel: int, stride: int) -> Layer:
    if kind == "con":
        return _con(r, a, kernel, stride)
    if kind == "affine":
        return _affine(r)
    if kind == "relu":
        if r.expect("relu_", "relu_2") == "relu_2" and r.b():
            raise r.fail("disabled relu layer")
        return Layer("relu")
    if kind in ("max_pool", "avg_pool", "avg_pool_everything"):
        r.expect("max_pool_2" if kind == "max_pool" else "avg_pool_2")
        nr, nc, sy, sx, py, px = (r.i() for _ in range(6))
        want = (0, 0, 1, 1) if kind == "avg_pool_everything" else (kernel, kernel, stride, stride)
        if (nr, nc, sy, sx) != want or (py, px) != (0, 0):
            raise r.fail(f"pooling {nr}x{nc}/{sy} pad {py} where {want} was expected")
        return Layer(kind, size=(nr, nc), stride=sy)
    if kind == "add_prev":
        r.expect("add_prev_")
        return Layer("add_prev", tag=a)
    if kind == "fc":
        r.expect("fc_2", "fc_3")
        outputs, inputs = r.i(), r.i()
        params = r.tensor().reshape(-1)
        w_shape = r.alias()
        b_shape = r.alias()
        bias_mode = r.i()
        for _ in range(4):
            r.f()
        if outputs != a or bias_mode != 1 or int(np.prod(b_shape)) != 0:
            raise r.fail("expected a 128-output fully connected layer without bias")
        weights = params[: int(np.prod(w_shape))].reshape(w_shape[0], w_shape[1] * w_shape[2] * w_shape[3])
        if weights.shape != (inputs, outputs):
            raise r.fail("fully connected weight shape does not match")
        return Layer("fc", weights=weights.copy())
    raise AssertionError(kind)


def parse_resnet(data: bytes) -> list[Layer]:
    """Parse the dlib ResNet descriptor file; return its layers in forward order."""
    r = _Reader(data)
    arch = architecture()
    if r.i() != 1:
        raise r.fail("not a dlib loss layer (version)")
    loss = r.expect("loss_metric_", "loss_metric_2")
    if loss == "loss_metric_2":
        r.f()
        r.f()
    forward: list[Layer] = []

    def parse(i: int) -> None:
        kind, a, kernel, stride = arch[i]
        version = r.i()
        if kind in ("tag", "skip"):
            if version != 1:
                raise r.fail(f"unexpected {kind} layer version {version}")
            parse(i + 1)
            forward.append(Layer(kind, tag=a))
            return
        if arch[i + 1][0] == "input":
            if version not in (2, 3):
                raise r.fail(f"unexpected input add_layer version {version}")
            r.expect("input_rgb_image_sized")
            means = (r.f(), r.f(), r.f())
            if (r.i(), r.i()) != (150, 150):
                raise r.fail("input size is not 150x150")
            forward.append(Layer("input", means=means))
            forward.append(_details(r, kind, a, kernel, stride))
            for _ in range(3):
                r.b()
            for _ in range(3):
                r.tensor()
            if version >= 3:
                r.i()
            return
        if version not in (1, 2):
            raise r.fail(f"unexpected add_layer version {version}")
        parse(i + 1)
        forward.append(_details(r, kind, a, kernel, stride))
        for _ in range(3):
            r.b()
        r.tensor()
        r.tensor()
        if version == 2:
            r.tensor()

    parse(0)
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    return forward
