"""The camera thread's step: a frame to an ``Item`` for the gate (``FaceStep``).

One frame per step: detect, align and embed it (``FacePipelinePort``: the fast embedding first
when ``escalation`` is set, the accurate one only for a close call), judge liveness across frames
(``edge.vision.liveness``, and with ``challenge`` an active challenge per face in view), and search
the gallery once, here: the hit travels to the gate as ``FaceSeen``. A frame and its embedding live
only in this step; a face judged an attack is never searched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from edge.agent.items import IDLE, AttackSeen, FaceSeen, Idle, Item
from edge.agent.ports import (
    CameraPort,
    Embedding,
    FaceEscalation,
    FaceObservation,
    FacePipelinePort,
    GalleryPort,
    SearchHit,
)
from edge.vision.challenge import ChallengeSession, Outcome, draw
from edge.vision.liveness import LivenessPolicy, LivenessTracker, Verdict


def face_seen(observation: FaceObservation | None, gallery: GalleryPort) -> FaceSeen | Idle:
    """The camera thread's half of a face decision: no face or a poor one is not an attempt (no
    search), nor is a face the liveness check called an attack (never searched); a good one is
    searched once, here, and the hit goes to the gate."""
    if observation is None or not observation.quality.ok or observation.attack:
        return IDLE
    return FaceSeen(gallery.search(observation.embedding, k=2))


class ActiveChallenge:
    """The active challenge: one random challenge per face in view (per track).

    Passed: the rest of the track may be matched. Failed (not answered in time): refused as an attack,
    once; the person steps away and back for a new challenge.
    """

    def __init__(self, prompt: Callable[[str], None]) -> None:
        self.prompt = prompt
        self.track = -1
        self.session: ChallengeSession | None = None
        self.reported = False

    def observe(self, track: int, points: NDArray[np.float32] | None, now: float) -> Outcome:
        if track != self.track or self.session is None:
            self.track, self.reported = track, False
            self.session = ChallengeSession(draw(), started=now)
            self.prompt(self.session.challenge.prompt)
        outcome = self.session.observe(points, now)
        if outcome is Outcome.FAILED:
            if self.reported:
                return Outcome.PENDING  # reported once; nothing of this track is matched
            self.reported = True
        return outcome


class FaceStep:
    """``step(camera)`` for the camera's ``DeviceWorker``; ``mono`` is the runner's monotonic clock."""

    def __init__(
        self,
        pipeline: FacePipelinePort,
        gallery: GalleryPort,
        *,
        escalation: FaceEscalation | None,
        liveness: LivenessPolicy | None,
        prompt: Callable[[str], None],
        mono: Callable[[], float],
    ) -> None:
        self.pipeline = pipeline
        self.gallery = gallery
        self.escalation = escalation
        self.mono = mono
        self.tracker = LivenessTracker(liveness) if liveness is not None else None
        self.active = ActiveChallenge(prompt) if liveness is not None and liveness.challenge else None
        if self.active is not None:
            pipeline.want_points = True

    def __call__(self, camera: CameraPort) -> Item | None:
        frame = camera.read()
        if frame is None:
            time.sleep(0.01)
            return None
        searched: list[tuple[Embedding, SearchHit]] = []
        escalation = self.escalation
        if escalation is not None:  # fast embedding; the accurate one only for a close call

            def uncertain(embedding: Embedding) -> bool:
                # on the camera thread: the gallery serialises its calls with one lock
                hit = self.gallery.search(embedding, k=2)
                searched.append((embedding, hit))
                return hit.subject is not None and escalation.uncertain(float(hit.score))

            observation = self.pipeline.probe(frame, rule="gate", uncertain=uncertain)
        else:
            observation = self.pipeline.process(frame, rule="gate")
        del frame  # frames live only in this thread, only as long as this step
        if observation is not None and observation.quality.ok:
            verdict = self._liveness(observation)
            if verdict is not None:
                return verdict
            if searched:
                fast, hit = searched[-1]
                if np.array_equal(fast, observation.embedding):
                    return FaceSeen(hit)  # the fast probe was decisive: its search is the gate's
        return face_seen(observation, self.gallery)

    def _liveness(self, observation: FaceObservation) -> AttackSeen | Idle | None:
        """None: live (or no liveness check), go on to the match."""
        if self.tracker is None:
            return None
        verdict = self.tracker.observe(observation.live_score, observation.box, self.mono())
        if verdict is Verdict.ATTACK:
            return AttackSeen()
        if verdict is Verdict.WAIT or observation.attack:
            return IDLE  # not matched: a frame judged an attack, or liveness not yet shown
        if self.active is not None:
            outcome = self.active.observe(self.tracker.track, observation.points, self.mono())
            if outcome is Outcome.FAILED:
                return AttackSeen()
            if outcome is Outcome.PENDING:
                return IDLE
        return None
