"""MediaPipe FaceMesh (468 landmarks, from the same wheel as BlazeFace) for precise alignment points.

The face's box, squared and enlarged 1.5x and rotated so the eyes are level (MediaPipe's ROI
convention), is resampled to the model's 192x192 input in [0, 1] RGB. Outputs are picked by size
(1404 = 468 x (x, y, z) in input pixels; the other is the face-presence logit). From the mesh we
take the same five points as dlib's 5-point model: both corners of each eye and the base of the
nose, so the chip can be cut with dlib's own geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.vision.detect import LEFT_EYE, RIGHT_EYE, Detection
from edge.vision.runtime import Interpreter, load_interpreter

INPUT = 192
ROI_SCALE = 1.5
#: Mesh indices of dlib's five points, in dlib's order: the subject's left eye outer and inner
#: corner, the subject's right eye outer and inner corner, the base of the nose.
DLIB5_FROM_MESH = (263, 362, 33, 133, 2)
MIN_PRESENCE = 0.5


class FaceMesh:
    def __init__(self, path: Path, threads: int = 2) -> None:
        self.interpreter: Interpreter = load_interpreter(path, threads)
        self.input_index = int(self.interpreter.get_input_details()[0]["index"])
        self.mesh_index = self.flag_index = -1
        for detail in self.interpreter.get_output_details():
            size = int(np.prod(detail["shape"]))
            if size == 468 * 3:
                self.mesh_index = int(detail["index"])
            elif size == 1:
                self.flag_index = int(detail["index"])
        if self.mesh_index < 0 or self.flag_index < 0:
            raise ValueError(f"{path.name}: outputs are not FaceMesh's 1404 landmarks and a face flag")

    def landmarks(self, frame_bgr: np.ndarray, det: Detection) -> np.ndarray | None:
        """468 (x, y) landmarks in frame pixels, or None when the model sees no face in the ROI."""
        import cv2

        right, left = det.keypoints[RIGHT_EYE], det.keypoints[LEFT_EYE]
        angle = float(np.arctan2(left[1] - right[1], left[0] - right[0]))
        side = ROI_SCALE * max(det.width, det.height)
        cx, cy = det.centre
        c, s = np.cos(angle), np.sin(angle)
        k = side / INPUT
        # crop (u, v) -> frame: centre + R(angle) @ ((u, v) - INPUT/2) * k
        to_frame = np.array(
            [[c * k, -s * k, cx - (c * k - s * k) * INPUT / 2], [s * k, c * k, cy - (s * k + c * k) * INPUT / 2]]
        )
        crop = cv2.warpAffine(
            frame_bgr,
            to_frame,
            (INPUT, INPUT),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        x = crop[:, :, ::-1].astype(np.float32) / np.float32(255.0)
        self.interpreter.set_tensor(self.input_index, x[None])
        self.interpreter.invoke()
        flag = float(np.asarray(self.interpreter.get_tensor(self.flag_index)).reshape(-1)[-1])
        if 1.0 / (1.0 + np.exp(-np.clip(flag, -50.0, 50.0))) < MIN_PRESENCE:
            return None
        pts = np.asarray(self.interpreter.get_tensor(self.mesh_index), np.float64).reshape(468, 3)[:, :2]
        out: np.ndarray = pts @ to_frame[:, :2].T + to_frame[:, 2]
        return out.astype(np.float32)


def dlib5(mesh: np.ndarray) -> np.ndarray:
    """dlib's five points (eye corners, nose base) from the 468 mesh landmarks."""
    return mesh[list(DLIB5_FROM_MESH)]
