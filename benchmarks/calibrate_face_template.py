"""Measure where BlazeFace's keypoints fall inside dlib's own 150x150 face chips (LFW dev images).

This produced ``edge.vision.align.TEMPLATE_150``: for each image, dlib's HOG detector and 5-point
model give the chip dlib would cut (``get_face_chip_details(shape, 150, 0.25)``); our pipeline's
keypoints (first pass + re-detection) are mapped into that chip; the per-keypoint median is the
template. Run: ``.venv/bin/python benchmarks/calibrate_face_template.py --images 400``.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from edge.datasets import REPO_ROOT, dataset
from edge.models.dlib_peer import DlibPeer
from edge.vision.mesh import dlib5
from edge.vision.pipeline import FacePipeline, select_face


def dlib_frame_to_chip(details) -> np.ndarray:
    """dlib's get_mapping_to_chip: rotated rect corners onto (0,0), (cols-1,0), (cols-1,rows-1)."""
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy, cy + s * dx + c * dy

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())], np.float64)
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float64)
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T  # 2x3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--points", choices=["mesh5", "blazeface4"], default="mesh5")
    args = ap.parse_args()
    lfw = dataset("lfw-dev")
    assert lfw is not None, "needs ../shared/datasets/lfw-dev"
    names = sorted((lfw / "lfw-deepfunneled").glob("*/*.jpg"))[:: max(1, 3811 // args.images)][: args.images]
    pipe = FacePipeline.load(REPO_ROOT / "models", "float32", 2)
    peer = DlibPeer()
    points = []
    for path in names:
        frame = cv2.imread(str(path))
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        rects = peer.detect(rgb)
        faces = pipe.detect(frame)
        if len(rects) != 1 or not faces:
            continue
        shape = peer.landmarks(rgb, rects[0])
        details = peer.dlib.get_face_chip_details(shape, 150, 0.25)
        m = dlib_frame_to_chip(details)
        det = pipe.refine(frame, select_face(faces, frame.shape, "center"))
        if args.points == "mesh5":
            assert pipe.mesh is not None
            mesh = pipe.mesh.landmarks(frame, det)
            if mesh is None:
                continue
            kp = dlib5(mesh).astype(np.float64)
        else:
            kp = det.keypoints[:4].astype(np.float64)
        points.append(kp @ m[:, :2].T + m[:, 2])
    arr = np.array(points)
    print(f"{len(arr)} images with one dlib face and a BlazeFace face")
    med = np.median(arr, axis=0)
    print(f"median (x, y) per keypoint ({args.points}):")
    print(np.array2string(med, precision=3, separator=", "))
    print("spread (median absolute deviation, px):", np.median(np.abs(arr - med), axis=0).round(2).tolist())


if __name__ == "__main__":
    main()
