"""Turn match evidence into a grant or a refusal, per the site's policy.

Pure logic with an injectable clock. Evidence:

- :class:`FaceMatch` - the gallery's best subject, its score and the margin to the next subject.
  Accepted when ``score >= threshold`` (from the model manifest, or the config override) and
  ``margin >= policy.margin``.
- :class:`FingerMatch` - the subject the sensor's matched slot belongs to (None: no match).
- :class:`CardRead` - the subject a card, PIN or QR code belongs to (None: unknown credential).

Modes (``[policy] mode``):

- ``face_or_finger``: an accepted face or finger grants; if both are given they must agree.
  A card alone grants only to subjects ``card_only`` allows (people who declined biometrics).
- ``face_and_card`` / ``finger_and_card``: both, naming the same subject.
- ``any``: any one accepted factor grants; factors that name subjects must agree.

Back-off: after ``failures_before_backoff`` refusals in a row the gate refuses everything for
``backoff_s``, and each further lock-out lasts ``backoff_growth`` times longer; a grant resets it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from edge.config.schema import PolicySection

log = logging.getLogger(__name__)

Modality = Literal["face", "fingerprint", "card", "face+card", "fingerprint+card", "none"]


@dataclass(frozen=True)
class FaceMatch:
    subject: str | None = field(repr=False)
    score: float
    margin: float

    @classmethod
    def from_search(cls, result: object) -> FaceMatch:
        """From an ``edge.gallery.store.SearchResult`` (duck-typed to keep this module pure)."""
        return cls(getattr(result, "subject"), float(getattr(result, "score")), float(getattr(result, "margin")))  # noqa: B009


@dataclass(frozen=True)
class FingerMatch:
    subject: str | None = field(repr=False)


@dataclass(frozen=True)
class CardRead:
    subject: str | None = field(repr=False)


Evidence = FaceMatch | FingerMatch | CardRead


@dataclass(frozen=True)
class Decision:
    granted: bool
    modality: Modality
    subject: str | None = field(repr=False)
    #: a short machine-readable reason: granted, no_match, below_threshold, low_margin, mismatch,
    #: card_required, biometric_required, no_evidence, backoff
    reason: str
    #: when refused for back-off, seconds until the gate listens again
    retry_after_s: float = 0.0


class DecisionPolicy:
    """One gate's decision rules and failure counter. Not thread-safe: one decision loop per gate."""

    def __init__(
        self,
        policy: PolicySection,
        threshold: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        card_only: Callable[[str], bool] | None = None,
    ) -> None:
        self.policy = policy
        self.threshold = threshold
        self._clock = clock
        self._card_only = card_only
        self._failures = 0
        self._lockouts = 0
        self._locked_until = 0.0

    # ---------------------------------------------------------------- back-off state

    @property
    def failures(self) -> int:
        return self._failures

    def locked_for(self) -> float:
        """Seconds left in the current back-off (0 when open)."""
        return max(0.0, self._locked_until - self._clock())

    # ---------------------------------------------------------------- deciding

    def decide(self, *evidence: Evidence) -> Decision:
        wait = self.locked_for()
        if wait > 0:
            return Decision(False, "none", None, "backoff", retry_after_s=wait)
        decision = self._judge(evidence)
        if decision.granted:
            self._failures = 0
            self._lockouts = 0
        elif decision.reason != "no_evidence":
            self._fail()
        log.info("decision: %s (%s)", "granted" if decision.granted else "refused", decision.reason)
        return decision

    def _fail(self) -> None:
        self._failures += 1
        if self._failures >= self.policy.failures_before_backoff:
            duration = self.policy.backoff_s * self.policy.backoff_growth**self._lockouts
            self._lockouts += 1
            self._failures = 0
            self._locked_until = self._clock() + duration
            log.warning("gate backs off for %.0f s after repeated failures", duration)

    def face_ok(self, face: FaceMatch) -> str:
        """'' when accepted, else the reason."""
        if face.subject is None:
            return "no_match"
        if face.score < self.threshold:
            return "below_threshold"
        if face.margin < self.policy.margin:
            return "low_margin"
        return ""

    def _judge(self, evidence: tuple[Evidence, ...]) -> Decision:
        faces = [e for e in evidence if isinstance(e, FaceMatch)]
        fingers = [e for e in evidence if isinstance(e, FingerMatch)]
        cards = [e for e in evidence if isinstance(e, CardRead)]
        if not evidence:
            return Decision(False, "none", None, "no_evidence")

        accepted: dict[str, str] = {}  # factor -> subject
        first_reason = ""
        for face in faces:
            why = self.face_ok(face)
            if not why and face.subject is not None:
                accepted.setdefault("face", face.subject)
            first_reason = first_reason or why
        for finger in fingers:
            if finger.subject is not None:
                accepted.setdefault("fingerprint", finger.subject)
            else:
                first_reason = first_reason or "no_match"
        for card in cards:
            if card.subject is not None:
                accepted.setdefault("card", card.subject)
            else:
                first_reason = first_reason or "no_match"

        if len(set(accepted.values())) > 1:
            return Decision(False, "none", None, "mismatch")
        subject = next(iter(accepted.values()), None)
        mode = self.policy.mode
        if mode == "face_or_finger":
            for factor in ("face", "fingerprint"):
                if factor in accepted:
                    return Decision(True, factor, subject, "granted")  # type: ignore[arg-type]
            if "card" in accepted and subject is not None and self._card_only is not None and self._card_only(subject):
                return Decision(True, "card", subject, "granted")
            if "card" in accepted:
                return Decision(False, "card", None, "biometric_required")
        elif mode in ("face_and_card", "finger_and_card"):
            factor = "face" if mode == "face_and_card" else "fingerprint"
            if factor in accepted and "card" in accepted:
                return Decision(True, f"{factor}+card", subject, "granted")  # type: ignore[arg-type]
            if factor in accepted:
                return Decision(False, factor, None, "card_required")  # type: ignore[arg-type]
            if "card" in accepted:
                return Decision(False, "card", None, "biometric_required")
        else:  # any
            for factor in ("face", "fingerprint", "card"):
                if factor in accepted:
                    return Decision(True, factor, subject, "granted")  # type: ignore[arg-type]
        return Decision(False, "none", None, first_reason or "no_match")
