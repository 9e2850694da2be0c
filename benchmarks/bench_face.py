"""Per-stage latency of the face pipeline on 640x480 and 1280x720 frames, beside dlib's own pipeline.

Frames are a grey background with a real LFW dev face pasted in (about a third of the frame height,
as at a gate). Each configuration runs ``--repeat`` times after one warm-up; medians are printed.
The peer is dlib as the face_recognition library uses it (HOG detector with one upsampling,
5-point landmarks, ResNet descriptor), in the same process on the same frames.

Rows: the enrolment pipeline (``process``: FaceMesh points and flip, two embedder runs), the gate's
probe on its fast path (BlazeFace keypoints, one embedder run: what most frames cost) and escalated
(the fast path, then the accurate embedding: what a close call costs), and the int8 model.

Run: ``.venv/bin/python benchmarks/bench_face.py [--repeat 15] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics

import cv2
import numpy as np

from edge.datasets import REPO_ROOT, dataset
from edge.models.dlib_peer import DlibPeer
from edge.vision.pipeline import FacePipeline, FaceResult

SIZES = [(640, 480), (1280, 720)]


def frame_with_face(face: np.ndarray, width: int, height: int) -> np.ndarray:
    side = height * 3 // 5  # LFW images are ~2x the face; the face ends up about a third of the height
    scaled = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
    frame = np.full((height, width, 3), 90, np.uint8)
    y, x = (height - side) // 2, (width - side) // 2
    frame[y : y + side, x : x + side] = scaled
    return frame


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--peer-repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    lfw = dataset("lfw-dev")
    if lfw is None:
        raise SystemExit("needs ../shared/datasets/lfw-dev (or EDGE_DATASETS)")
    face = cv2.imread(str(lfw / "lfw-deepfunneled" / "Eric_Daze" / "Eric_Daze_0001.jpg"))
    configs = {
        # label -> model variant, alignment, flip, how frames go through: the enrolment (accurate)
        # pipeline, or the gate's probe with its fast path only or escalated to the accurate one
        "f32 mesh5+flip": ("float32", "mesh5", True, "process"),
        "f32 probe fast": ("float32", "mesh5", True, "fast"),
        "f32 probe esc.": ("float32", "mesh5", True, "escalated"),
        "f32 both+flip": ("float32", "both", True, "process"),
        "int8 mesh5+flip": ("int8", "mesh5", True, "process"),
        "int8 probe fast": ("int8", "mesh5", True, "fast"),
    }
    pipes = {
        label: FacePipeline.load(REPO_ROOT / "models", model, args.threads, alignment=alignment, flip=flip)  # type: ignore[arg-type]
        for label, (model, alignment, flip, _) in configs.items()
    }

    def run(label: str, frame: np.ndarray) -> FaceResult | None:
        how = configs[label][3]
        pipe = pipes[label]
        if how == "process":
            return pipe.process(frame)
        return pipe.probe(frame, uncertain=(lambda _e: how == "escalated"))

    peer = DlibPeer()
    print(f"threads={args.threads}, repeat={args.repeat} (dlib {args.peer_repeat}); median milliseconds per frame")
    stages = ("detect", "redetect", "landmarks", "align", "quality", "embed", "escalate", "total")
    header = f"{'frame':>10} {'pipeline':>15} " + " ".join(f"{s:>9}" for s in stages)
    print(header)
    for w, h in SIZES:
        frame = frame_with_face(face, w, h)
        totals = {}
        for name in pipes:
            run(name, frame)
            runs = []
            for _ in range(args.repeat):
                result = run(name, frame)
                assert result is not None
                runs.append(result.timings)
            m = medians(runs)
            totals[name] = m["total"]
            cells = " ".join(f"{m.get(s, 0.0):9.1f}" for s in stages)
            print(f"{w}x{h:<5} {name:>15} {cells}")
        peer.process(frame)
        runs = []
        for _ in range(args.peer_repeat):
            desc, timings = peer.process(frame)
            assert desc is not None
            runs.append(timings)
        m = medians(runs)
        print(
            f"{w}x{h:<5} {'dlib peer':>15} {m['detect']:9.1f} {'-':>9} {m['landmarks']:9.1f} {'-':>9} {'-':>9} "
            f"{m['align+embed']:9.1f} {'-':>9} {m['total']:9.1f}   (dlib's embed column includes its chip alignment)"
        )
        for name, total in totals.items():
            print(f"{'':>10} speed-up of {name} over dlib: {m['total'] / total:.1f}x")


if __name__ == "__main__":
    main()
