"""Quality gates for a detected face, each failing with a reason an operator can act on.

All measures are taken from the keypoints and the aligned chip (in memory); nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.vision.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, Detection


@dataclass(frozen=True)
class QualityLimits:
    min_face_px: int = 80  # box side in frame pixels
    min_sharpness: float = 25.0  # variance of the Laplacian of the grey chip (LFW faces: 40-400)
    max_yaw: float = 0.35  # nose offset from the eye midline, in eye distances (about 25 degrees)
    max_pitch: float = 0.30  # relative change of the eye-nose / eye-mouth ratio from frontal
    min_brightness: float = 50.0
    max_brightness: float = 210.0
    max_clipped: float = 0.25  # fraction of chip pixels at 0-5 or 250-255
    other_face_ratio: float = 0.6  # another face at least this fraction of the chosen one's size


#: eye-to-nose over eye-to-mouth vertical ratio of a frontal face in the alignment template.
FRONTAL_PITCH_RATIO = 0.53


@dataclass
class Quality:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    sharpness: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    brightness: float = 0.0
    face_px: float = 0.0

    @property
    def score(self) -> float:
        """Higher is better: used to rank enrolment frames that pass."""
        size = min(self.face_px / 200.0, 1.0)
        sharp = min(self.sharpness / 400.0, 1.0)
        pose = max(0.0, 1.0 - abs(self.yaw) / 0.35 * 0.5 - abs(self.pitch) / 0.3 * 0.5)
        return size + sharp + 2.0 * pose


def pose(keypoints: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) proxies from the keypoints, in the face's own (roll-corrected) frame."""
    r, le, n, m = keypoints[RIGHT_EYE], keypoints[LEFT_EYE], keypoints[NOSE], keypoints[MOUTH]
    axis = le - r
    dist = float(np.hypot(*axis))
    if dist < 1e-6:
        return 0.0, 0.0
    ux = axis / dist
    uy = np.array([-ux[1], ux[0]])
    mid = (r + le) / 2
    yaw = float((n - mid) @ ux) / dist
    eye_nose = float((n - mid) @ uy)
    eye_mouth = float((m - mid) @ uy)
    pitch = (eye_nose / eye_mouth - FRONTAL_PITCH_RATIO) / FRONTAL_PITCH_RATIO if eye_mouth > 1e-6 else 1.0
    return yaw, pitch


def assess(det: Detection, chip_bgr: np.ndarray, others: list[Detection], limits: QualityLimits) -> Quality:
    import cv2

    reasons: list[str] = []
    side = float(max(det.width, det.height))
    if side < limits.min_face_px:
        reasons.append(f"face too small ({side:.0f}px < {limits.min_face_px}px): step closer")
    grey = cv2.cvtColor(chip_bgr, cv2.COLOR_BGR2GRAY)
    inner = grey[30:130, 25:125]
    sharpness = float(cv2.Laplacian(inner, cv2.CV_64F).var())
    if sharpness < limits.min_sharpness:
        reasons.append(f"blurred (sharpness {sharpness:.0f} < {limits.min_sharpness:.0f}): hold still")
    yaw, pitch = pose(det.keypoints)
    if abs(yaw) > limits.max_yaw:
        reasons.append(f"head turned (yaw {yaw:+.2f}): look at the camera")
    if abs(pitch) > limits.max_pitch:
        reasons.append(f"head tilted up or down (pitch {pitch:+.2f}): look at the camera")
    brightness = float(inner.mean())
    clipped = float(((inner <= 5) | (inner >= 250)).mean())
    if brightness < limits.min_brightness:
        reasons.append(f"too dark (mean {brightness:.0f})")
    elif brightness > limits.max_brightness:
        reasons.append(f"too bright (mean {brightness:.0f})")
    elif clipped > limits.max_clipped:
        reasons.append(f"over- or under-exposed ({clipped:.0%} of the face clipped)")
    big_others = [o for o in others if max(o.width, o.height) >= limits.other_face_ratio * side]
    if big_others:
        reasons.append(f"more than one face ({len(big_others) + 1}): one person at a time")
    return Quality(not reasons, reasons, sharpness, yaw, pitch, brightness, side)
