"""The lane's decision rules: pure, clock passed in, no I/O.

``LanePolicy`` turns evidence into a decision: a match needs the threshold and margin first, then the
candidate's consent (the gate looks it up in the ledger); it applies the profile's mode (one factor or two), pairs factors inside a window, and backs off after repeated
failures. It is the product's one decision policy; the gate loop depends on ``PolicyPort`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from edge.config.schema import PolicySection
from edge.modality import BIOMETRIC, Modality

# Reason codes carried in access events (documented in docs/operations.md).
GRANTED = "granted"
GRANTED_TWO_FACTOR = "granted_two_factor"
NO_MATCH = "no_match"
LOW_MARGIN = "low_margin"
NO_CONSENT = "no_consent"
CONSENT_STALE = "consent_stale"
BACKOFF = "backoff"
UNKNOWN_CREDENTIAL = "unknown_credential"
AWAITING_SECOND_FACTOR = "awaiting_second_factor"


@dataclass(frozen=True)
class Evidence:
    """One factor presented at the lane. ``subject`` is the best candidate (not yet a match) or None."""

    modality: Modality
    subject: str | None
    score: float | None = None
    margin: float | None = None
    # Whether the candidate's consent covers this modality and purpose now (the gate asks the ledger).
    consented: bool = True
    # Set by the gate when the subject's consent does not cover the biometric factor of a two-factor
    # mode: the non-biometric credential is then the person's whole way through (PIPL art. 16).
    alternative_path: bool = False


@dataclass(frozen=True)
class Decision:
    """A decision by ``modality``; a two-factor grant names its other factor in ``second``."""

    granted: bool
    modality: Modality
    subject: str | None
    reason: str
    second: Modality | None = None

    @property
    def factors(self) -> tuple[Modality, ...]:
        return (self.modality,) if self.second is None else (self.modality, self.second)


class PolicyPort(Protocol):
    def decide(self, evidence: Evidence, now: float) -> Decision | None:
        """A decision, or None while a two-factor mode waits for the other factor."""


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0
    period: float = 0.0


@dataclass
class LanePolicy:
    section: PolicySection
    face_threshold: float
    second_factor_window_s: float = 10.0
    # A face stays in view for many frames: failures closer together than this are one attempt.
    attempt_gap_s: float = 2.0
    _last_failure: dict[Modality, float] = field(default_factory=dict)
    _backoff: _Backoff = field(default_factory=_Backoff)
    _pending: dict[str, tuple[Modality, float]] = field(default_factory=dict)  # subject -> (modality, at)

    def _required(self) -> tuple[Modality, Modality] | None:
        """The two factors of a two-factor mode, the biometric one first."""
        if self.section.mode == "face_and_card":
            return (Modality.face, Modality.card)
        if self.section.mode == "finger_and_card":
            return (Modality.fingerprint, Modality.card)
        return None

    def in_backoff(self, now: float) -> bool:
        return now < self._backoff.until

    def _fail(self, evidence: Evidence, reason: str, now: float) -> Decision:
        last = self._last_failure.get(evidence.modality)
        new_attempt = last is None or now - last >= self.attempt_gap_s
        if evidence.modality in BIOMETRIC and reason in (NO_MATCH, LOW_MARGIN) and new_attempt:
            self._last_failure[evidence.modality] = now
            state = self._backoff
            state.failures += 1
            if state.failures >= self.section.failures_before_backoff:
                state.period = (
                    self.section.backoff_s if state.period == 0 else state.period * self.section.backoff_growth
                )
                state.until = now + state.period
                state.failures = 0
        return Decision(False, evidence.modality, None, reason)

    def _grant(self, modality: Modality, subject: str, second: Modality | None = None) -> Decision:
        self._backoff = _Backoff()
        return Decision(True, modality, subject, GRANTED if second is None else GRANTED_TWO_FACTOR, second)

    def decide(self, evidence: Evidence, now: float) -> Decision | None:
        if evidence.modality in BIOMETRIC and self.in_backoff(now):
            return Decision(False, evidence.modality, None, BACKOFF)
        if evidence.subject is None:
            reason = NO_MATCH if evidence.modality in BIOMETRIC else UNKNOWN_CREDENTIAL
            return self._fail(evidence, reason, now)
        if evidence.modality == Modality.face:
            if evidence.score is None or evidence.score < self.face_threshold:
                return self._fail(evidence, NO_MATCH, now)
            if (evidence.margin or 0.0) < self.section.margin:
                return self._fail(evidence, LOW_MARGIN, now)
        if not evidence.consented:
            # A match is never reported for a subject without active consent: the decision names nobody.
            return Decision(False, evidence.modality, None, NO_CONSENT)
        required = self._required()
        if required is None or evidence.alternative_path:
            return self._grant(evidence.modality, evidence.subject)
        if evidence.modality not in required:
            return Decision(False, evidence.modality, None, AWAITING_SECOND_FACTOR)
        # Two-factor mode: pair with a pending factor of the other kind for the same subject.
        for subject, (_, at) in list(self._pending.items()):
            if now - at > self.second_factor_window_s:
                del self._pending[subject]
        pending = self._pending.get(evidence.subject)
        if pending is not None and pending[0] != evidence.modality:
            del self._pending[evidence.subject]
            return self._grant(required[0], evidence.subject, required[1])
        self._pending[evidence.subject] = (evidence.modality, now)
        return None
