"""Passive presentation-attack detection (face liveness) on the frame the gate already has.

Two MiniFASNet models (:mod:`edge.models.minifasnet`) look at the face at two context scales: V2
at 2.7x the face box, V1SE at 4x (enough of the surroundings to see a paper or screen edge). Each
gets an 80x80 crop (:func:`crop`) and gives three class probabilities; the live score is the mean
of their class-1 ("live") probabilities, in [0, 1]. A face whose score is below the bundle's
operating threshold (``manifest.json`` ``pad.threshold``, fixed on NUAA dev) is an attack.

Scores stay inside this module's callers on the device: the gate keeps only the verdict, never
publishes or stores a score (docs/liveness.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.errors import ModelError
from edge.models.bundle import Manifest
from edge.vision.runtime import Interpreter, load_interpreter

Variant = Literal["float32", "int8"]
#: (bundle role prefix, context scale) of the two models
MODELS: tuple[tuple[str, float], ...] = (("pad_v2", 2.7), ("pad_v1se", 4.0))
CROP = 80


def crop_box(
    frame_shape: Sequence[int], box: tuple[float, float, float, float], scale: float
) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) inclusive pixel box ``scale`` times the face box, about its centre,
    shrunk so it fits the frame and shifted inside it (the models were trained on crops made so)."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    scale = min((height - 1) / bh, (width - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x0 + bw / 2, y0 + bh / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > width - 1:
        left, right = left - (right - width + 1), float(width - 1)
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), float(height - 1)
    return int(left), int(top), int(right), int(bottom)


def crop(frame_bgr: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """The 80x80 uint8 BGR crop of ``frame_bgr`` around the face box at ``scale`` (bilinear)."""
    import cv2

    x0, y0, x1, y1 = crop_box(frame_bgr.shape, box, scale)
    patch = frame_bgr[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1]
    return np.asarray(cv2.resize(patch, (CROP, CROP), interpolation=cv2.INTER_LINEAR))


def softmax_live(logits: np.ndarray) -> float:
    z = np.asarray(logits, np.float64).reshape(-1)
    e = np.exp(z - z.max())
    return float(e[1] / e.sum())


@dataclass(frozen=True)
class PadSettings:
    threshold: float  # live score below this is an attack
    note: str


def pad_settings(manifest: Manifest) -> PadSettings:
    raw = manifest.raw.get("pad")
    if not isinstance(raw, dict) or not isinstance(raw.get("threshold"), int | float):
        raise ModelError(
            f"{manifest.root}: the model bundle has no liveness (pad) section", hint="rebuild it: edge models build"
        )
    return PadSettings(float(raw["threshold"]), str(raw.get("threshold_note", "")))


class PadModel:
    """Both liveness models of one variant, loaded from a verified bundle."""

    def __init__(self, manifest: Manifest, variant: Variant = "int8", threads: int = 2) -> None:
        self.settings = pad_settings(manifest)
        self.variant = variant
        self._models: list[tuple[Interpreter, int, int, float]] = []
        for role, scale in MODELS:
            interpreter = load_interpreter(manifest.path(f"{role}_{variant}"), threads)
            inp = int(interpreter.get_input_details()[0]["index"])
            out = int(interpreter.get_output_details()[0]["index"])
            self._models.append((interpreter, inp, out, scale))
        self.last_ms = 0.0

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    def live_score(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """The live score in [0, 1] of the face at ``box`` (x0, y0, x1, y1) in a BGR uint8 frame."""
        t0 = time.perf_counter()
        total = 0.0
        for interpreter, inp, out, scale in self._models:
            patch = crop(frame_bgr, box, scale)
            interpreter.set_tensor(inp, patch[None].astype(np.float32))
            interpreter.invoke()
            total += softmax_live(interpreter.get_tensor(out)[0])
            del patch
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return total / len(self._models)

    def is_attack(self, score: float) -> bool:
        return score < self.settings.threshold
