"""dlib's own pipeline as the ``face_recognition`` library runs it: the peer for evaluation and benchmarks.

HOG detector with one upsampling, the 5-point shape predictor, ``compute_face_descriptor`` (which
cuts the chip with ``get_face_chip(size=150, padding=0.25)``), and Euclidean distance with the
library's 0.6 tolerance. Needs the ``dlib-bin`` extra and ``face-recognition-models``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge.errors import ModelError

TOLERANCE = 0.6  # face_recognition's default: distance <= 0.6 means the same person


class DlibPeer:
    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError:
            raise ModelError(
                "the dlib peer needs dlib and face_recognition_models",
                hint="pip install -e '.[dlib-bin]' && pip install --no-deps face-recognition-models==0.3.0",
            ) from None
        self.dlib: Any = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def detect(self, rgb: np.ndarray) -> list[Any]:
        return list(self.detector(rgb, 1))

    def landmarks(self, rgb: np.ndarray, rect: Any) -> Any:
        return self.shapes(rgb, rect)

    def chip(self, rgb: np.ndarray, shape: Any) -> np.ndarray:
        return np.asarray(self.dlib.get_face_chip(rgb, shape, size=150, padding=0.25))

    def describe_chip(self, chip_rgb: np.ndarray) -> np.ndarray:
        return np.asarray(self.encoder.compute_face_descriptor(np.ascontiguousarray(chip_rgb)), np.float32)

    def process(self, frame_bgr: np.ndarray) -> tuple[np.ndarray | None, dict[str, float]]:
        """Descriptor of the face nearest the image centre (same rule as ours on LFW), with timings."""
        rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
        t0 = time.perf_counter()
        rects = self.detect(rgb)
        t1 = time.perf_counter()
        timings = {"detect": (t1 - t0) * 1e3}
        if not rects:
            timings["total"] = timings["detect"]
            return None, timings
        h, w = rgb.shape[:2]
        rect = min(rects, key=lambda r: float(np.hypot(r.center().x - w / 2, r.center().y - h / 2)))
        shape = self.landmarks(rgb, rect)
        t2 = time.perf_counter()
        timings["landmarks"] = (t2 - t1) * 1e3
        desc = np.asarray(self.encoder.compute_face_descriptor(rgb, shape, 1), np.float32)
        t3 = time.perf_counter()
        timings["align+embed"] = (t3 - t2) * 1e3
        timings["total"] = (t3 - t0) * 1e3
        return desc, timings
