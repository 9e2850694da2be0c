"""Liveness across frames: the passive verdicts of one face in view, fused (pure; no I/O, no clock).

The camera thread sees the same person for many frames. :class:`LivenessTracker` follows the face in
view (a *track*: frames close in time and place) and turns each frame's passive live score
(:mod:`edge.vision.pad`) into a verdict for the gate:

- ``LIVE``: the frame may be matched. A clearly live score (at or above ``threshold + band``) with no
  attack frame in the recent window is live at once, so a clear live decision is never slowed; a
  borderline score (between ``threshold`` and ``threshold + band``) is live only after
  ``steady_frames`` frames in a row that were not attacks (a photo rarely stays above the threshold
  for long; a live face in bad light does);
- ``ATTACK``: ``attack_votes`` of the last ``window`` frames scored below the threshold. Reported
  once; for the next ``refuse_s`` seconds nothing of the track is matched (a photo that flickers
  above the threshold after being caught does not get through), then it is judged afresh (a photo
  still held up is refused again; the next person in a queue, stepping into the same place without
  a gap, waits at most that long);
- ``WAIT``: not decided yet (a single attack frame, a borderline frame, a frame without a score).

Times are the caller's monotonic seconds. Scores never leave the tracker.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    LIVE = "live"
    ATTACK = "attack"
    WAIT = "wait"


@dataclass(frozen=True)
class LivenessPolicy:
    threshold: float
    band: float = 0.35
    window: int = 5
    attack_votes: int = 2
    steady_frames: int = 3
    gap_s: float = 1.5
    refuse_s: float = 3.0
    #: a face whose centre moved more than this many box widths since the last frame is someone else
    jump: float = 1.0
    #: also require a random active challenge (edge.vision.challenge) per face in view
    challenge: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0 or self.band < 0 or not 1 <= self.attack_votes <= self.window:
            raise ValueError("liveness policy: 0 < threshold < 1, band >= 0, 1 <= attack_votes <= window")


Box = tuple[float, float, float, float]


@dataclass
class LivenessTracker:
    policy: LivenessPolicy
    _recent: deque[bool] = field(default_factory=deque)  # attack flags of the track's last frames
    _steady: int = 0  # frames in a row that were not attacks
    _refused_at: float | None = None
    _last_seen: float | None = None
    _last_box: Box | None = None
    track: int = 0  # counts faces in view: a new value is a new person (or the same one back)

    def _same_track(self, box: Box, now: float) -> bool:
        if self._last_seen is None or self._last_box is None or now - self._last_seen > self.policy.gap_s:
            return False
        x0, y0, x1, y1 = self._last_box
        width = max(x1 - x0, 1.0)
        dx = (box[0] + box[2]) / 2 - (x0 + x1) / 2
        dy = (box[1] + box[3]) / 2 - (y0 + y1) / 2
        return bool((dx * dx + dy * dy) ** 0.5 <= self.policy.jump * width)

    def reset(self) -> None:
        self._recent.clear()
        self._steady = 0
        self._refused_at = None
        self._last_seen = None
        self._last_box = None

    @property
    def refused(self) -> bool:
        """The face in view was judged an attack (for ``refuse_s``, or until it leaves view)."""
        return self._refused_at is not None

    def observe(self, score: float | None, box: Box, now: float) -> Verdict:
        """The verdict for one frame's face: ``score`` None for a face that was not scored."""
        if not self._same_track(box, now):
            self.reset()
            self.track += 1
        self._last_seen, self._last_box = now, box
        if score is None:
            return Verdict.WAIT
        p = self.policy
        attack = score < p.threshold
        self._recent.append(attack)
        while len(self._recent) > p.window:
            self._recent.popleft()
        self._steady = 0 if attack else self._steady + 1
        if self._refused_at is not None:
            if now - self._refused_at < p.refuse_s:
                return Verdict.WAIT
            self._refused_at = None  # judged afresh from this frame on
            self._recent.clear()
            self._recent.append(attack)
            self._steady = 0 if attack else 1
        if sum(self._recent) >= p.attack_votes:
            self._refused_at = now
            return Verdict.ATTACK
        if attack:
            return Verdict.WAIT
        if score >= p.threshold + p.band and not any(self._recent):
            return Verdict.LIVE
        return Verdict.LIVE if self._steady >= p.steady_frames else Verdict.WAIT
