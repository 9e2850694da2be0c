"""The flatbuffer writer on a small graph of every operator it supports, run by the real runtime."""

from __future__ import annotations

import numpy as np

from edge.models import tflite_writer as tw


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    return it


def test_small_graph_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    g = tw.Graph()
    x = g.activation((1, 9, 9, 2), "x")
    g.inputs = [x]
    w = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    conv_opts = {0: ("b", tw.VALID), 1: ("i", 2), 2: ("i", 2), 3: ("b", tw.ACT_RELU)}
    c = g.op(tw.OP_CONV_2D, [x, g.constant(w, "w"), g.constant(b, "b")], (1, 4, 4, 4), "conv", tw.OPT_CONV2D, conv_opts)
    pool_opts = {0: ("b", tw.VALID), 1: ("i", 2), 2: ("i", 2), 3: ("i", 2), 4: ("i", 2), 5: ("b", 0)}
    p = g.op(tw.OP_AVERAGE_POOL_2D, [x], (1, 4, 4, 2), "pool", tw.OPT_POOL2D, pool_opts)
    pads = g.constant(np.array([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32), "pads", tw.INT32)
    pp = g.op(tw.OP_PAD, [p, pads], (1, 4, 4, 4), "pad", tw.OPT_PAD, {})
    s = g.op(tw.OP_ADD, [c, pp], (1, 4, 4, 4), "add", tw.OPT_ADD, {0: ("b", tw.ACT_NONE)})
    m = g.op(
        tw.OP_MEAN,
        [s, g.constant(np.array([1, 2], np.int32), "axes", tw.INT32)],
        (1, 4),
        "mean",
        tw.OPT_REDUCER,
        {0: ("b", 0)},
    )
    fw = rng.normal(size=(3, 4)).astype(np.float32)
    y = g.op(tw.OP_FULLY_CONNECTED, [m, g.constant(fw, "fw"), -1], (1, 3), "fc", tw.OPT_FULLY_CONNECTED, {0: ("b", 0)})
    g.outputs = [y]
    it = _interpreter(g.serialise("test"))

    xin = rng.normal(size=(1, 9, 9, 2)).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], xin)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])

    img = xin[0]
    conv = np.zeros((4, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            patch = img[2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            conv[i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2])) + b
    conv = np.maximum(conv, 0)
    pool = img[:8, :8].reshape(4, 2, 4, 2, 2).mean(axis=(1, 3))
    pooled = np.concatenate([pool, np.zeros((4, 4, 2), np.float32)], axis=2)
    want = (conv + pooled).mean(axis=(0, 1)) @ fw.T
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)


def test_weight_buffers_are_16_byte_aligned() -> None:
    g = tw.Graph()
    x = g.activation((1, 3), "x")
    g.inputs = [x]
    w = g.constant(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    g.outputs = [g.op(tw.OP_FULLY_CONNECTED, [x, w, -1], (1, 2), "fc", tw.OPT_FULLY_CONNECTED, {0: ("b", 0)})]
    data = g.serialise("align")
    assert data[4:8] == b"TFL3"
    pos = data.index(np.arange(6, dtype=np.float32).tobytes())
    assert pos % 16 == 0
