"""BlazeFace face detection (MediaPipe short- and full-range models) with a pure numpy decoder.

The frame is letterboxed to the model's square input, scaled to [-1, 1] RGB, and the outputs are
identified by shape (``[1, N, 16]`` boxes and keypoints, ``[1, N, 1]`` scores), because the tensor
names differ between the two models. Boxes are decoded against MediaPipe's SSD anchors and merged
by weighted non-maximum suppression.

Keypoints, in the model's order: the subject's right eye (on the image's left in an unmirrored
camera), the subject's left eye, the nose tip, the mouth centre, the right and left ear tragions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.vision.runtime import Interpreter, load_interpreter

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)


@dataclass(frozen=True)
class Detection:
    """One face in frame pixel coordinates."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    keypoints: np.ndarray  # (6, 2) x, y
    resolution: float = 1.0  # model input pixels per frame pixel when it was found

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def anchors(size: int, strides: list[int], per_layer: int) -> np.ndarray:
    """MediaPipe SSD anchor centres (N, 2) in [0, 1] for a square input; layers with equal strides merge."""
    out: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        count = 0
        while i < len(strides) and strides[i] == stride:
            count += per_layer
            i += 1
        grid = size // stride
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, count, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


MODEL_CONFIG = {
    # input size, anchor strides, anchors per layer and location, minimum score
    "short": (128, [8, 16, 16, 16], 2, 0.5),
    "full": (192, [4], 1, 0.6),
}


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    result: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return result


def _logit(p: float) -> float:
    """The logit at which a sigmoid reaches ``p`` (0.5 -> 0.0)."""
    return math.log(p / (1.0 - p))


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_xy: np.ndarray, size: int, min_score: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Decode raw outputs into (box[4], keypoints[6,2], score) in the model's [0, 1] square.

    Overlapping candidates (IoU > 0.3) are merged by MediaPipe's weighted suppression: their boxes and
    keypoints are averaged with the scores as weights, and the best score is kept.

    Which candidates pass and the order suppression visits them in are decided on the model's raw
    logits (``sigmoid(x) >= p`` exactly when ``x >= logit(p)``), best first and equal logits in
    anchor order, so neither depends on the CPU: numpy's sigmoid (``exp``) differs in its last bits
    between SIMD paths, and its default sort keeps no order among equal keys on AVX-512.
    """
    logits = raw_scores.reshape(-1)
    keep = np.flatnonzero(logits >= _logit(min_score))
    if keep.size == 0:
        return []
    order = np.lexsort((keep, -logits[keep].astype(np.float64)))  # best first, ties by anchor
    keep = keep[order]
    s = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -100.0, 100.0)))
    raw = raw_boxes.reshape(-1, 16)[keep] / size
    a = anchor_xy[keep]
    cx, cy = raw[:, 0] + a[:, 0], raw[:, 1] + a[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:].reshape(-1, 6, 2) + a[:, None, :]
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    remaining = np.arange(len(s))
    while remaining.size:
        first = remaining[0]
        overlap = _iou(boxes[first], boxes[remaining])
        group = remaining[overlap > 0.3]
        weights = s[group][:, None]
        total = float(weights.sum())
        box = (boxes[group] * weights).sum(axis=0) / total
        kp = (kps[group] * weights[:, :, None]).sum(axis=0) / total
        out.append((box, kp, float(s[first])))
        remaining = remaining[overlap <= 0.3]
    return out


class BlazeFace:
    """One BlazeFace model with its anchors; ``detect(frame_bgr)`` returns faces in frame pixels."""

    def __init__(self, path: Path, kind: str, threads: int = 2) -> None:
        size, strides, per_layer, min_score = MODEL_CONFIG[kind]
        self.kind = kind
        self.size = size
        self.min_score = min_score
        self.anchors = anchors(size, strides, per_layer)
        self.interpreter: Interpreter = load_interpreter(path, threads)
        self.input_index = int(self.interpreter.get_input_details()[0]["index"])
        self._canvas = np.empty((1, size, size, 3), np.float32)
        self.box_index = self.score_index = -1
        for detail in self.interpreter.get_output_details():
            shape = tuple(int(d) for d in detail["shape"])
            if shape[-1] == 16:
                self.box_index = int(detail["index"])
            elif shape[-1] == 1:
                self.score_index = int(detail["index"])
        if self.box_index < 0 or self.score_index < 0 or len(self.anchors) != self.anchors.shape[0]:
            raise ValueError(f"{path.name}: outputs are not BlazeFace's [1,N,16] and [1,N,1]")

    def detect(self, frame_bgr: np.ndarray, min_score: float | None = None) -> list[Detection]:
        import cv2

        h, w = frame_bgr.shape[:2]
        side = max(h, w)
        scale = self.size / side
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        oy, ox = (self.size - nh) // 2, (self.size - nw) // 2
        canvas = self._canvas  # the letterbox bars stay at -1 (black); only the picture is rewritten
        canvas.fill(-1.0)
        picture = canvas[0, oy : oy + nh, ox : ox + nw]
        picture[...] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        picture *= np.float32(1 / 127.5)
        picture -= np.float32(1.0)
        self.interpreter.set_tensor(self.input_index, canvas)
        self.interpreter.invoke()
        raw_boxes = self.interpreter.get_tensor(self.box_index)
        raw_scores = self.interpreter.get_tensor(self.score_index)
        found = decode(
            raw_boxes, raw_scores, self.anchors, self.size, self.min_score if min_score is None else min_score
        )
        faces = []
        offset = np.array([ox, oy], np.float32)
        for box, kp, score in found:
            b = (box.reshape(2, 2) * self.size - offset) / scale
            k = (kp * self.size - offset) / scale
            box_px = (float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1]))
            faces.append(Detection(box_px, score, k.astype(np.float32), scale))
        return faces
