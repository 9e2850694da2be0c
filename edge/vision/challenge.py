"""Active liveness challenge: blink, or turn the head left or right, drawn at random (pure logic).

For high-security doors (``[face] liveness = "challenge"``), enrolment, and faces whose passive score
is borderline. The challenge is drawn from the operating system's random source each time, so a
replayed video of one earlier success answers the wrong challenge two times in three.

Measures, from the FaceMesh landmarks already in the bundle (468 points, frame pixels):

- eye openness: the mean over both eyes of (two lid-to-lid distances) / (2 x corner-to-corner
  distance), the usual eye aspect ratio; about 0.25-0.35 open, under 0.15 closed;
- yaw: the nose tip's horizontal offset from the eye-corner midpoint, in eye-corner distances
  (0 facing the camera; positive when the nose points to image right).

A blink passes when, after at least one open frame sets the person's own open level, one frame is
below ``closed_ratio`` of it (so a blink caught in a single frame at 10 fps counts) and a later
frame is open again (a closed-eyes photo does not pass). A turn passes when the yaw moves by
``turn`` in the asked direction from the first frames' level. Failing to answer in ``timeout_s``
fails the challenge.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

import numpy as np

# FaceMesh indices: (outer corner, inner corner, upper lid a, lower lid a, upper lid b, lower lid b)
RIGHT_EYE = (33, 133, 160, 144, 158, 153)  # the subject's right eye (image left, unmirrored)
LEFT_EYE = (263, 362, 387, 373, 385, 380)
NOSE_TIP = 1


class Challenge(enum.Enum):
    BLINK = "blink"
    TURN_LEFT = "turn_left"  # the head turns so the nose points to image left
    TURN_RIGHT = "turn_right"

    @property
    def prompt(self) -> str:
        return {
            "blink": "please blink",
            "turn_left": "please turn your head left",
            "turn_right": "please turn your head right",
        }[self.value]


def draw() -> Challenge:
    """A challenge from the OS random source (never a fixed sequence)."""
    return secrets.choice(list(Challenge))


class Outcome(enum.Enum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


def _dist(points: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(*(points[a, :2] - points[b, :2])))


def eye_openness(points: np.ndarray) -> float:
    values = []
    for outer, inner, u1, l1, u2, l2 in (RIGHT_EYE, LEFT_EYE):
        width = _dist(points, outer, inner)
        values.append((_dist(points, u1, l1) + _dist(points, u2, l2)) / (2.0 * width) if width > 0 else 0.0)
    return float(sum(values) / len(values))


def yaw(points: np.ndarray) -> float:
    right, left = points[RIGHT_EYE[0], :2], points[LEFT_EYE[0], :2]
    span = float(np.hypot(*(left - right)))
    if span <= 0:
        return 0.0
    return float((points[NOSE_TIP, 0] - (right[0] + left[0]) / 2) / span)


@dataclass
class ChallengeSession:
    challenge: Challenge
    started: float
    timeout_s: float = 6.0
    closed_ratio: float = 0.6
    open_ratio: float = 0.85
    turn: float = 0.15
    _open_level: float | None = None
    _closed_seen: bool = False
    _yaw_start: list[float] = field(default_factory=list)
    outcome: Outcome = Outcome.PENDING

    def observe(self, points: np.ndarray | None, now: float) -> Outcome:
        """Feed one frame's landmarks (None: no face in this frame)."""
        if self.outcome is not Outcome.PENDING:
            return self.outcome
        if now - self.started > self.timeout_s:
            self.outcome = Outcome.FAILED
            return self.outcome
        if points is None:
            return self.outcome
        if self.challenge is Challenge.BLINK:
            self._blink(eye_openness(points))
        else:
            self._turn(yaw(points))
        return self.outcome

    def _blink(self, openness: float) -> None:
        if self._open_level is None:
            self._open_level = openness
            return
        if openness < self.closed_ratio * self._open_level:
            self._closed_seen = True
        elif self._closed_seen and openness >= self.open_ratio * self._open_level:
            self.outcome = Outcome.PASSED
        elif not self._closed_seen:
            self._open_level = max(self._open_level, openness)

    def _turn(self, value: float) -> None:
        if len(self._yaw_start) < 2:
            self._yaw_start.append(value)
            return
        start = sum(self._yaw_start) / len(self._yaw_start)
        moved = value - start
        wanted = -1.0 if self.challenge is Challenge.TURN_LEFT else 1.0
        if moved * wanted >= self.turn:
            self.outcome = Outcome.PASSED
