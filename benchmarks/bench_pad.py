"""Face liveness (PAD): what it costs the gate probe, what it catches, and what it calls LFW.

Three parts, one process:

1. Cost: the gate's probe (``FacePipeline.probe``, fast path) on NUAA dev live 640x480 webcam frames,
   without liveness (the peer: today's probe) and with the int8 and float32 liveness models;
   medians over ``--repeat`` passes of ``--frames`` frames, after a warm-up. The issue's goal: the
   int8 check adds <= 3 ms to the median probe.
2. Figures on NUAA dev (printed-photo attacks) at the bundle's threshold, as
   ``edge models evaluate --pad`` computes them, for both variants.
3. LFW dev: how many of ``--lfw-images`` images (web photographs, printed and scanned: no live
   person ever stood in front of that camera) the check calls attacks. Recognition figures
   (``edge models evaluate --lfw``) are measured with liveness off and do not change.

Run: ``.venv/bin/python benchmarks/bench_pad.py [--frames 40] [--repeat 5] [--lfw-images 1000]``
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time

import cv2
import numpy as np

from edge.datasets import REPO_ROOT, dataset
from edge.models import pad_eval
from edge.vision.pipeline import FacePipeline, select_face


def probe_ms(pipeline: FacePipeline, frames: list[np.ndarray], repeat: int) -> float:
    for frame in frames[:3]:
        pipeline.probe(frame)
    runs = []
    for _ in range(repeat):
        for frame in frames:
            t0 = time.perf_counter()
            pipeline.probe(frame)
            runs.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lfw-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    nuaa = dataset("nuaa-pad-dev")
    if nuaa is None:
        print("bench_pad: NUAA dev data not found (set EDGE_DATASETS)")
        return 0
    models = REPO_ROOT / "models"
    with (nuaa / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    live = [r for r in rows if r["label"] == "live"]
    step = max(1, len(live) // args.frames)
    frames = [cv2.imread(str(nuaa / r["path"])) for r in live[::step][: args.frames]]

    print(f"1. gate probe on {len(frames)} NUAA live 640x480 frames, {args.threads} threads, median ms")
    peer = FacePipeline.load(models, "float32", args.threads)
    base = probe_ms(peer, frames, args.repeat)
    print(f"   probe without liveness (peer)      {base:7.2f}")
    pipelines = {}
    for variant in ("int8", "float32"):
        pipelines[variant] = FacePipeline.load(models, "float32", args.threads, liveness=variant)  # type: ignore[arg-type]
        with_pad = probe_ms(pipelines[variant], frames, args.repeat)
        print(f"   probe with {variant:7} liveness       {with_pad:7.2f}   (+{with_pad - base:.2f} ms)")

    print(f"2. NUAA dev ({len(rows)} images), threshold from the bundle")
    samples = pad_eval.read_labels(nuaa)
    for variant, pipeline in pipelines.items():
        pad = pipeline.pad
        assert pad is not None

        def score(frame: np.ndarray, pipeline: FacePipeline = pipeline) -> tuple[float | None, float]:
            faces = pipeline.detect(frame)
            if not faces:
                return None, 0.0
            det = pipeline.refine(frame, select_face(faces, frame.shape, "gate"))
            assert pipeline.pad is not None
            return pipeline.pad.live_score(frame, det.box), pipeline.pad.last_ms

        scored, ms = pad_eval.evaluate(samples, score)
        r = pad_eval.summarise(scored, pad.threshold, ms)
        print(
            f"   {variant:7} APCER {r['apcer']:.2%}  BPCER {r['bpcer']:.2%}  ACER {r['acer']:.2%}  "
            f"BPCER@APCER1% {r['bpcer_at_apcer_1pct']:.2%}  @5% {r['bpcer_at_apcer_5pct']:.2%}  "
            f"no face {r['images_without_face']}  PAD median {r['pad_median_ms']:.2f} ms"
        )

    lfw = dataset("lfw-dev")
    if lfw is not None and args.lfw_images:
        images = sorted((lfw / "lfw-deepfunneled").rglob("*.jpg"))
        random.Random(13).shuffle(images)
        pipeline = pipelines["int8"]
        faces = attacks = 0
        for path in images[: args.lfw_images]:
            result = pipeline.process(cv2.imread(str(path)), "center")
            if result is None:
                continue
            faces += 1
            attacks += int(result.attack)
        share = attacks / faces if faces else 0.0
        print(
            f"3. LFW dev: the int8 check calls {attacks} of {faces} photographs with a face attacks ({share:.1%}); "
            "LFW recognition is evaluated with liveness off"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
