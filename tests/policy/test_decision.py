"""Decision policy: thresholds, margins, modality fusion, back-off on a fake clock."""

from __future__ import annotations

import math

import pytest

from edge.config.schema import PolicySection
from edge.policy.decision import CardRead, DecisionPolicy, FaceMatch, FingerMatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(mode: str = "face_or_finger", **kw: float) -> tuple[DecisionPolicy, Clock]:
    clock = Clock()
    return DecisionPolicy(PolicySection(mode=mode, **kw), threshold=0.6, clock=clock), clock


GOOD = FaceMatch("alice", 0.8, 0.3)


@pytest.mark.parametrize(
    ("face", "granted", "reason"),
    [
        (FaceMatch("alice", 0.8, 0.3), True, "granted"),
        (FaceMatch("alice", 0.6, math.inf), True, "granted"),  # the threshold itself is accepted
        (FaceMatch("alice", 0.59, 0.3), False, "below_threshold"),
        (FaceMatch("alice", 0.8, 0.05), False, "low_margin"),
        (FaceMatch(None, -math.inf, math.inf), False, "no_match"),
    ],
)
def test_face_threshold_and_margin(face, granted, reason):
    p, _ = policy(margin=0.1)
    d = p.decide(face)
    assert (d.granted, d.reason) == (granted, reason)
    assert d.subject == ("alice" if granted else None)


def test_face_from_search_result():
    from edge.gallery.store import SearchResult

    face = FaceMatch.from_search(SearchResult("bob", 0.9, 0.2))
    assert face == FaceMatch("bob", 0.9, 0.2)


def test_face_or_finger():
    p, _ = policy()
    assert p.decide(FingerMatch("bob")).modality == "fingerprint"
    assert p.decide(GOOD, FingerMatch("alice")).granted
    assert p.decide(GOOD, FingerMatch("bob")).reason == "mismatch"  # two factors naming two people
    assert p.decide(CardRead("alice")).reason == "biometric_required"
    assert p.decide(FingerMatch(None)).reason == "no_match"


def test_card_alone_only_for_subjects_allowed_it():
    clock = Clock()
    p = DecisionPolicy(PolicySection(), 0.6, clock=clock, card_only=lambda s: s == "no-biometrics")
    d = p.decide(CardRead("no-biometrics"))
    assert (d.granted, d.modality) == (True, "card")
    assert not p.decide(CardRead("alice")).granted


@pytest.mark.parametrize(("mode", "bio"), [("face_and_card", GOOD), ("finger_and_card", FingerMatch("alice"))])
def test_two_factor_modes(mode, bio):
    p, _ = policy(mode)
    d = p.decide(bio, CardRead("alice"))
    assert d.granted
    assert d.modality.endswith("+card")
    assert p.decide(bio).reason == "card_required"
    assert p.decide(CardRead("alice")).reason == "biometric_required"
    assert p.decide(bio, CardRead("bob")).reason == "mismatch"
    assert p.decide(bio, CardRead(None)).reason == "card_required"


def test_face_and_card_refuses_weak_face():
    p, _ = policy("face_and_card")
    d = p.decide(FaceMatch("alice", 0.3, 0.3), CardRead("alice"))
    assert not d.granted
    assert d.reason == "biometric_required"


def test_any_mode_accepts_a_single_factor():
    p, _ = policy("any")
    assert p.decide(CardRead("carol")).modality == "card"
    assert p.decide(FingerMatch("carol")).granted
    assert not p.decide(FaceMatch("carol", 0.1, 1.0)).granted


def test_no_evidence_is_refused_without_counting_a_failure():
    p, _ = policy(failures_before_backoff=1)
    assert p.decide().reason == "no_evidence"
    assert p.locked_for() == 0.0


def test_backoff_after_repeated_failures_grows_and_resets():
    p, clock = policy(failures_before_backoff=3, backoff_s=30.0, backoff_growth=2.0)
    bad = FaceMatch("mallory", 0.2, 0.5)
    for _ in range(2):
        assert p.decide(bad).reason == "below_threshold"
    assert p.locked_for() == 0.0
    p.decide(bad)  # third failure: locked for 30 s
    d = p.decide(GOOD)  # even a good match is refused while locked
    assert (d.granted, d.reason, d.retry_after_s) == (False, "backoff", 30.0)
    clock.now += 29.9
    assert p.decide(GOOD).reason == "backoff"
    clock.now += 0.2
    for _ in range(3):
        p.decide(bad)
    assert p.locked_for() == pytest.approx(60.0)  # the second lock-out is twice as long
    clock.now += 60.0
    assert p.decide(GOOD).granted  # a grant resets the counter and the growth
    for _ in range(3):
        p.decide(bad)
    assert p.locked_for() == pytest.approx(30.0)


def test_decisions_never_show_subjects_in_repr_or_logs(caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    p, _ = policy()
    d = p.decide(FaceMatch("subject-secret-1", 0.9, 0.5))
    assert d.granted
    assert "subject-secret-1" not in repr(d)
    assert "subject-secret-1" not in repr(FaceMatch("subject-secret-1", 0.9, 0.5))
    assert all("subject-secret-1" not in r.getMessage() for r in caplog.records)
