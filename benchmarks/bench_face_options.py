"""What each accuracy lever is worth on LFW dev, and what it costs: re-detection, fit weights, flip.

Detection runs once per image (first pass and re-detection keypoints are cached under
``.cache/lfw``); each option then re-runs alignment and embedding for all dev images and reports
the standard-protocol accuracy (thresholds from the other folds). Run:
``.venv/bin/python benchmarks/bench_face_options.py [--model float32] [--options all]``
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from edge.datasets import REPO_ROOT, dataset
from edge.models import lfw
from edge.vision.align import align
from edge.vision.pipeline import FacePipeline, l2_normalise, select_face

OPTIONS = {
    # name: (use re-detected keypoints, fit weights, flip)
    "base": (True, (1.0, 1.0, 1.0, 1.0), False),
    "no-redetect": (False, (1.0, 1.0, 1.0, 1.0), False),
    "eyes-heavy": (True, (2.0, 2.0, 0.5, 1.0), False),
    "nose-light": (True, (1.0, 1.0, 0.3, 1.0), False),
    "flip": (True, (1.0, 1.0, 1.0, 1.0), True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="float32")
    ap.add_argument("--options", default="all")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    root = dataset("lfw-dev")
    if root is None:
        raise SystemExit("needs lfw-dev")
    pairs = lfw.read_pairs(root)
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    pipe = FacePipeline.load(REPO_ROOT / "models", args.model, args.threads)  # type: ignore[arg-type]
    kp_path = REPO_ROOT / ".cache" / "lfw" / "keypoints-deepfunneled.npz"
    if kp_path.is_file():
        data = np.load(kp_path)
        first, refined = data["first"], data["refined"]
    else:
        first = np.full((len(names), 6, 2), np.nan, np.float32)
        refined = first.copy()
        for i, name in enumerate(names):
            frame = cv2.imread(str(root / "lfw-deepfunneled" / name))
            faces = pipe.detect(frame)
            if faces:
                det = select_face(faces, frame.shape, "center")
                first[i] = det.keypoints
                refined[i] = pipe.refine(frame, det).keypoints
        kp_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kp_path, first=first, refined=refined)
    chosen = list(OPTIONS) if args.options == "all" else args.options.split(",")
    for opt in chosen:
        redetect, weights, flip = OPTIONS[opt]
        pipe.flip = flip
        kps = refined if redetect else first
        emb: dict[str, tuple[np.ndarray | None, dict[str, float]]] = {}
        t = []
        for i, name in enumerate(names):
            if np.isnan(kps[i]).any():
                emb[name] = (None, {})
                continue
            frame = cv2.imread(str(root / "lfw-deepfunneled" / name))
            t0 = time.perf_counter()
            chip = align(frame, kps[i], weights=np.array(weights))
            v = pipe.embed_chip(chip)
            t.append((time.perf_counter() - t0) * 1e3)
            emb[name] = (l2_normalise(v), {})
        s = lfw.summarise(lfw.score_pairs(pairs, emb), None)
        print(
            f"{args.model:8} {opt:12} accuracy {s['accuracy_mean'] * 100:.2f}% +- {s['accuracy_std'] * 100:.2f} "
            f"TAR@FAR1e-3 {s['tar_at_far_1e-3'] * 100:.2f}% best thr {s['best_threshold_all']:.4f} "
            f"align+embed median {np.median(t):.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
