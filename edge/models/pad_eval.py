"""Presentation-attack detection figures in ISO/IEC 30107-3 terms, from a labelled image folder.

- APCER: the share of attack presentations accepted as live (score >= threshold);
- BPCER: the share of live presentations refused as attacks (score < threshold), a live image in
  which the gate finds no face counting as a refusal (the person would not get through);
- ACER: their mean; BPCER at APCER = 1 % and 5 %: the refusal rate at the lowest threshold that
  accepts at most that share of the attacks (ties count as accepted).

An attack image without a face is counted as refused (nothing to match) and reported in
``images_without_face``. The folder holds ``labels.csv`` (columns ``path,label,...``; label ``live``
or ``spoof``; path relative to the folder), as ``../shared/datasets/nuaa-pad-dev`` does.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

LABELS = ("live", "spoof")


@dataclass(frozen=True)
class Sample:
    path: Path
    live: bool


@dataclass(frozen=True)
class Scored:
    live: bool
    score: float | None  # None: no face found


def read_labels(root: Path) -> list[Sample]:
    labels = root / "labels.csv"
    try:
        with labels.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise EdgeError(f"cannot read {labels}: {exc.strerror}", hint="point --pad at a folder with labels.csv") from None
    samples = []
    for n, row in enumerate(rows, start=2):
        label, rel = row.get("label"), row.get("path")
        if label not in LABELS or not rel:
            raise EdgeError(f"{labels}:{n}: want columns path,label with label live or spoof, got {label!r}")
        inside = os.path.normpath(rel)
        if os.path.isabs(inside) or inside == ".." or inside.startswith(".." + os.sep):
            raise EdgeError(f"{labels}:{n}: path {rel!r} leaves the data folder")
        samples.append(Sample(root / inside, label == "live"))
    if not samples:
        raise EdgeError(f"{labels} lists no images")
    return samples


def _rate(errors: int, total: int) -> float:
    return errors / total if total else 0.0


def bpcer_at_apcer(scored: list[Scored], apcer: float) -> float:
    """The lowest BPCER among thresholds whose APCER is at most ``apcer``."""
    attacks = sorted((s.score for s in scored if not s.live and s.score is not None), reverse=True)
    n_attacks = sum(1 for s in scored if not s.live)
    allowed = math.floor(apcer * n_attacks + 1e-9)
    threshold = -math.inf if allowed >= len(attacks) else math.nextafter(attacks[allowed], math.inf)
    return _bpcer(scored, threshold)


def _bpcer(scored: list[Scored], threshold: float) -> float:
    live = [s for s in scored if s.live]
    return _rate(sum(1 for s in live if s.score is None or s.score < threshold), len(live))


def _apcer(scored: list[Scored], threshold: float) -> float:
    attacks = [s for s in scored if not s.live]
    return _rate(sum(1 for s in attacks if s.score is not None and s.score >= threshold), len(attacks))


def summarise(scored: list[Scored], threshold: float, pad_ms: Iterable[float]) -> dict[str, float | int]:
    apcer, bpcer = _apcer(scored, threshold), _bpcer(scored, threshold)
    ms = list(pad_ms)
    return {
        "apcer": round(apcer, 4),
        "bpcer": round(bpcer, 4),
        "acer": round((apcer + bpcer) / 2, 4),
        "bpcer_at_apcer_1pct": round(bpcer_at_apcer(scored, 0.01), 4),
        "bpcer_at_apcer_5pct": round(bpcer_at_apcer(scored, 0.05), 4),
        "images": len(scored),
        "images_without_face": sum(1 for s in scored if s.score is None),
        "live_images": sum(1 for s in scored if s.live),
        "attack_images": sum(1 for s in scored if not s.live),
        "threshold": threshold,
        "pad_median_ms": round(float(np.median(ms)), 3) if ms else 0.0,
    }


def evaluate(
    samples: list[Sample],
    score: Callable[[np.ndarray], tuple[float | None, float]],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Scored], list[float]]:
    """Run ``score(frame) -> (live score or None without a face, PAD ms)`` on every image."""
    import cv2

    scored: list[Scored] = []
    timings: list[float] = []
    for n, sample in enumerate(samples, start=1):
        frame = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if frame is None:
            raise EdgeError(f"{sample.path} is not a readable image")
        value, ms = score(frame)
        del frame
        scored.append(Scored(sample.live, value))
        if value is not None:
            timings.append(ms)
        if progress is not None:
            progress(n, len(samples))
    return scored, timings
