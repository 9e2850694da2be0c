"""Liveness across frames (edge.vision.liveness) and the active challenge (edge.vision.challenge).

Pure logic, driven frame by frame with made-up scores, boxes, landmarks and times: what is tried is
written beside each sequence.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
import pytest

from edge.vision import challenge as ch
from edge.vision.liveness import LivenessPolicy, LivenessTracker, Verdict

BOX = (100.0, 100.0, 200.0, 220.0)
POLICY = LivenessPolicy(threshold=0.1, band=0.35, window=5, attack_votes=2, steady_frames=3, gap_s=1.5, refuse_s=3.0)


def run(
    scores: Sequence[float | None], *, dt: float = 0.1, box: tuple[float, float, float, float] = BOX
) -> list[Verdict]:
    tracker = LivenessTracker(POLICY)
    return [tracker.observe(s, box, i * dt) for i, s in enumerate(scores)]


def test_a_clearly_live_face_is_live_on_its_first_frame() -> None:
    assert run([0.97])[0] is Verdict.LIVE


def test_a_photo_is_refused_once_and_its_track_never_matches_after() -> None:
    # a printed photo: two low frames, then it flickers above the threshold, then low again
    verdicts = run([0.01, 0.02, 0.9, 0.95, 0.01, 0.99])
    assert verdicts[:2] == [Verdict.WAIT, Verdict.ATTACK]
    assert verdicts[2:] == [Verdict.WAIT] * 4  # reported once, never matched while it stays in view


def test_one_bad_frame_of_a_live_face_does_not_refuse_it() -> None:
    # motion blur on one frame: not matched on that frame, then clear frames after a steady run
    verdicts = run([0.05, 0.9, 0.92, 0.95, 0.97, 0.96, 0.98])
    assert Verdict.ATTACK not in verdicts
    assert verdicts[0] is Verdict.WAIT
    assert Verdict.LIVE in verdicts


def test_a_borderline_face_needs_a_steady_run() -> None:
    verdicts = run([0.3, 0.3, 0.3, 0.3])
    assert verdicts == [Verdict.WAIT, Verdict.WAIT, Verdict.LIVE, Verdict.LIVE]


def test_a_refusal_holds_for_refuse_s_then_the_face_is_judged_afresh() -> None:
    # a photo caught at 0.1 s, then (held still) refused again 3 s later; a live face replacing it in
    # the same place without a gap is matched after the refusal period and a steady run
    scores = [0.01, 0.01] + [0.01] * 30 + [0.02, 0.9, 0.9, 0.9, 0.9] + [0.9] * 30
    verdicts = run(scores)
    attacks = [i for i, v in enumerate(verdicts) if v is Verdict.ATTACK]
    assert attacks == [1, 32]  # at 0.1 s and once more at 3.2 s (30 frames of 0.1 s later)
    first_live = verdicts.index(Verdict.LIVE)
    assert first_live >= 32 + 30  # not before the second refusal period (30 frames) ended


def test_a_new_person_or_a_pause_starts_a_new_track() -> None:
    tracker = LivenessTracker(POLICY)
    assert tracker.observe(0.01, BOX, 0.0) is Verdict.WAIT
    assert tracker.observe(0.01, BOX, 0.1) is Verdict.ATTACK
    assert tracker.refused
    # the photo is taken away; 2 s later a live face stands in the same place: a new track
    assert tracker.observe(0.95, BOX, 2.1) is Verdict.LIVE
    tracker.observe(0.01, BOX, 2.2)
    tracker.observe(0.01, BOX, 2.3)
    assert tracker.refused
    # someone else appears far away at once: not the refused track
    far = (600.0, 100.0, 700.0, 220.0)
    assert tracker.observe(0.95, far, 2.4) is Verdict.LIVE


def test_a_frame_without_a_score_decides_nothing() -> None:
    assert run([None, None]) == [Verdict.WAIT, Verdict.WAIT]


def test_the_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="attack_votes"):
        LivenessPolicy(threshold=0.1, window=3, attack_votes=4)
    with pytest.raises(ValueError, match="threshold"):
        LivenessPolicy(threshold=1.5)


# ----------------------------------------------------------------------------- challenge


def face_points(openness: float = 0.3, nose_dx: float = 0.0) -> np.ndarray:
    """468 FaceMesh-like points: both eyes 40 px wide with lids ``openness`` x width apart; the nose
    tip ``nose_dx`` eye spans right of the eyes' midpoint."""
    p = np.zeros((468, 3))
    for (outer, inner, u1, l1, u2, l2), x0 in ((ch.RIGHT_EYE, 100.0), (ch.LEFT_EYE, 200.0)):
        xs = (x0 - 20, x0 + 20) if outer in ch.RIGHT_EYE else (x0 + 20, x0 - 20)
        p[outer, :2], p[inner, :2] = (xs[0], 100), (xs[1], 100)
        gap = openness * 40
        for up, low, dx in ((u1, l1, -5), (u2, l2, 5)):
            p[up, :2], p[low, :2] = (x0 + dx, 100 - gap / 2), (x0 + dx, 100 + gap / 2)
    span = abs(p[ch.LEFT_EYE[0], 0] - p[ch.RIGHT_EYE[0], 0])
    p[ch.NOSE_TIP, :2] = (150 + nose_dx * span, 150)
    return p


def test_eye_openness_and_yaw_measure_what_they_say() -> None:
    assert ch.eye_openness(face_points(0.3)) == pytest.approx(0.3, abs=1e-9)
    assert ch.eye_openness(face_points(0.05)) == pytest.approx(0.05, abs=1e-9)
    assert ch.yaw(face_points(nose_dx=0.2)) == pytest.approx(0.2, abs=1e-9)


def test_a_blink_of_one_frame_at_10_fps_passes() -> None:
    session = ch.ChallengeSession(ch.Challenge.BLINK, started=0.0)
    seq = [0.30, 0.31, 0.08, 0.29]  # closed in a single frame, then open again
    outcomes = [session.observe(face_points(o), 0.1 * i) for i, o in enumerate(seq)]
    assert outcomes[-1] is ch.Outcome.PASSED
    assert outcomes[:-1] == [ch.Outcome.PENDING] * 3


def test_a_photo_with_closed_eyes_or_open_eyes_never_passes_a_blink() -> None:
    for level in (0.3, 0.05):  # a rigid photo: the eyes never change
        session = ch.ChallengeSession(ch.Challenge.BLINK, started=0.0, timeout_s=2.0)
        outcomes = [session.observe(face_points(level), 0.1 * i) for i in range(30)]
        assert ch.Outcome.PASSED not in outcomes
        assert outcomes[-1] is ch.Outcome.FAILED


def test_eyes_that_close_and_stay_closed_do_not_pass() -> None:
    # a video that cuts to a closed-eyes photo: closed seen but never open again
    session = ch.ChallengeSession(ch.Challenge.BLINK, started=0.0, timeout_s=1.0)
    outcomes = [session.observe(face_points(o), 0.1 * i) for i, o in enumerate([0.3] + [0.05] * 15)]
    assert outcomes[-1] is ch.Outcome.FAILED


def test_a_turn_passes_only_in_the_asked_direction() -> None:
    right = ch.ChallengeSession(ch.Challenge.TURN_RIGHT, started=0.0, timeout_s=1.0)
    left = ch.ChallengeSession(ch.Challenge.TURN_LEFT, started=0.0, timeout_s=1.0)
    for i, dx in enumerate([0.0, 0.0, 0.1, 0.2, 0.25] + [0.25] * 10):  # the head turns to image right
        right.observe(face_points(nose_dx=dx), 0.1 * i)
        left.observe(face_points(nose_dx=dx), 0.1 * i)
    assert right.outcome is ch.Outcome.PASSED
    assert left.outcome is ch.Outcome.FAILED


def test_challenges_are_drawn_at_random_not_in_a_fixed_order() -> None:
    drawn = collections.Counter(ch.draw() for _ in range(600))
    assert set(drawn) == set(ch.Challenge)
    # each of three about 200 times; a fixed or biased draw fails (p of a false failure < 1e-9)
    assert all(120 < n < 280 for n in drawn.values())
    assert all(c.prompt.startswith("please") for c in ch.Challenge)
