"""Small in-memory implementations of the gate's ports: test doubles, clearly not the real subsystems.

They behave like the real ones where the gate depends on it (cosine search with a margin, consent
per subject and modality, credentials allowed per entry, devices that fail and come back) so the
tests assert real decisions made by the real gate code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from edge.agent.ports import Embedding, Frame, Rule
from edge.agent.wired import Wired
from edge.config.schema import AgentConfig, Profile
from edge.consent.enforce import REFUSAL_REASONS, EnrolmentRefused, enrolment_refusal
from edge.errors import HardwareError
from edge.fingerprint.api import NO_FINGER, Identified, Match, NoMatch
from edge.state import StateDir

__all__ = ["Match", "NoMatch"]  # re-exported: the tests build sensor results from here


class FakeClock:
    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono

    def wall(self) -> float:
        return self._wall

    def mono(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds


@dataclass(frozen=True)
class Quality:
    ok: bool = True
    reasons: Sequence[str] = ()


@dataclass(frozen=True)
class Observation:
    embedding: Embedding
    quality: Quality = Quality()
    attack: bool = False
    live_score: float | None = None
    box: tuple[float, float, float, float] = (100.0, 100.0, 200.0, 220.0)
    points: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Hit:
    subject: str | None
    score: float
    margin: float


@dataclass(frozen=True)
class Credential:
    kind: str
    value: str


def unit(seed: int) -> Embedding:
    vector = np.random.default_rng(seed).standard_normal(128)
    return np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)


def near(vector: Embedding, seed: int, noise: float = 0.2) -> Embedding:
    """Another capture of the same face: the vector plus a little noise, renormalised."""
    other = vector + noise * unit(10_000 + seed)
    return np.asarray(other / np.linalg.norm(other), dtype=np.float32)


class MemoryGallery:
    """Cosine 1:N over a dict; margin = best minus the best other subject."""

    def __init__(self) -> None:
        self.faces: dict[str, np.ndarray] = {}
        self.slots: dict[int, str] = {}
        self.searches = 0

    def search(self, probe: np.ndarray, k: int = 2) -> Hit:
        self.searches += 1
        scores = sorted(((float(v @ probe), s) for s, v in self.faces.items()), reverse=True)
        if not scores:
            return Hit(None, 0.0, 0.0)
        second = scores[1][0] if len(scores) > 1 else -1.0
        return Hit(scores[0][1], scores[0][0], scores[0][0] - second)

    def subject_for_slot(self, slot: int) -> str | None:
        return self.slots.get(slot)


@dataclass(frozen=True)
class Entry:
    purposes: frozenset[str]


@dataclass
class MemoryConsent:
    consents: set[tuple[str, str]] = field(default_factory=set)  # (subject, modality)
    credentials: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, value) -> subject
    stale: bool = False
    purpose: str = "access:main-gate"
    purposes: dict[str, set[str]] = field(default_factory=dict)  # subject -> purposes, where not the default
    version: int | None = None  # the applied list's version (None: no list yet)

    def allows(self, subject: str, modality: str, purpose: str | None, now: float) -> bool:
        return purpose == self.purpose and (subject, modality) in self.consents

    def is_stale(self, now: float) -> bool:
        return self.stale

    def credential_subject(self, kind: str, value: str, now: float) -> str | None:
        return self.credentials.get((kind, value))

    def entry(self, subject: str) -> Entry | None:
        """Every subject this double knows serves its purpose, unless ``purposes`` says otherwise."""
        known = {s for s, _ in self.consents} | set(self.credentials.values())
        if subject not in known:
            return None
        return Entry(frozenset(self.purposes.get(subject, {self.purpose})))


T = TypeVar("T")


@dataclass
class MemoryEnforcer:
    """The enforcer's enrolment calls over ``MemoryConsent``, with the real rule
    (``enrolment_refusal``) and the real audit record shapes, kept in ``audit``."""

    consent: MemoryConsent
    audit: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def _refuse(self, subject: str, modality: str, reason: str) -> None:
        self.audit.append(("enrolment_refused", {"subject": subject, "modality": modality, "reason": reason}))

    def check_enrolment(self, subject: str, modality: str, now: float) -> None:
        reason = enrolment_refusal(self.consent, subject, modality, self.consent.purpose, now)
        if reason is not None:
            self._refuse(subject, modality, reason)
            raise EnrolmentRefused(modality, reason, self.consent.purpose)

    def refuse(self, subject: str, modality: str, reason: str, now: float) -> None:
        assert reason in REFUSAL_REASONS
        self._refuse(subject, modality, reason)

    def enrol(
        self,
        subject: str,
        modality: str,
        now: float,
        write: Callable[[], T],
        *,
        flagged: Callable[[T], bool] = lambda _result: False,
    ) -> T:
        self.check_enrolment(subject, modality, now)
        result = write()
        outcome = "duplicate_flagged" if flagged(result) else "enrolled"
        self.audit.append(("enrolment", {"subject": subject, "modality": modality, "result": outcome}))
        return result

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.audit]


class BrokenSink:
    """A sink whose every emit fails, as a broken outbox would."""

    def __init__(self) -> None:
        self.calls = 0

    def emit(self, event: object) -> None:
        self.calls += 1
        raise OSError("disk full")


class Switch:
    """A device's plug: while ``broken`` is set, opening or using the device raises HardwareError."""

    def __init__(self) -> None:
        self.broken = threading.Event()
        self.opens = 0


class SwitchedCamera:
    """Yields the current frame (an embedding standing in for an image) until its switch breaks."""

    def __init__(self, switch: Switch, frames: list[Frame | None]) -> None:
        if switch.broken.is_set():
            raise HardwareError("camera not found")
        switch.opens += 1
        self.switch = switch
        self.frames = frames
        self.closed = False

    def read(self) -> Frame | None:
        if self.switch.broken.is_set():
            raise HardwareError("camera unplugged")
        threading.Event().wait(0.01)
        return self.frames[0] if self.frames else None

    def close(self) -> None:
        self.closed = True


class EmbeddingPipeline:
    """The face pipeline's double: the 'frame' already is the embedding.

    A frame of shape (2, 128) holds a fast and an accurate embedding: ``probe`` returns the fast one
    unless ``uncertain`` says otherwise; ``process`` always the accurate one. Calls are counted.
    """

    want_points = False  # no landmarks: the liveness doubles below carry their own

    def __init__(self) -> None:
        self.escalations = 0
        self.probes = 0

    def process(self, frame: Frame, rule: Rule = "gate") -> Observation | None:
        return Observation(np.asarray(frame[-1] if frame.ndim == 2 else frame, dtype=np.float32))

    def probe(
        self, frame: Frame, rule: Rule = "gate", uncertain: Callable[[Embedding], bool] | None = None
    ) -> Observation | None:
        self.probes += 1
        embeddings = np.asarray(frame, dtype=np.float32)
        if embeddings.ndim == 1:
            return Observation(embeddings)
        if uncertain is not None and uncertain(embeddings[0]):
            self.escalations += 1
            return Observation(embeddings[1])
        return Observation(embeddings[0])


class SwitchedSensor:
    """A sensor that reports the finger currently on the glass (a slot, or no-match) once per placement."""

    def __init__(self, switch: Switch, placed: list[Match | NoMatch]) -> None:
        if switch.broken.is_set():
            raise HardwareError("sensor does not answer the handshake")
        switch.opens += 1
        self.switch = switch
        self.placed = placed
        self.emptied = 0
        self.rings: list[str | None] = []

    def ring(self, colour: str | None) -> None:
        self.rings.append(colour)

    def empty(self) -> None:
        self.emptied += 1
        self.placed.clear()

    def identify(self, timeout_s: float) -> Identified:
        if self.switch.broken.is_set():
            raise HardwareError("sensor timed out")
        if self.placed:
            return self.placed.pop(0)
        threading.Event().wait(min(timeout_s, 0.02))
        return NO_FINGER

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- a whole agent on doubles

SUBJECT_ON_SENSOR = "s-dora-44"


class RepeatingSensor:
    """A finger placed every 0.2 s: slot 5 (enrolled, consenting)."""

    def identify(self, timeout_s: float) -> Identified:
        threading.Event().wait(0.2)
        return Match(5, 120)

    def empty(self) -> None:
        pass

    def ring(self, colour: str | None) -> None:
        pass

    def close(self) -> None:
        pass


def build_wired(config: AgentConfig, profile: Profile, state: StateDir) -> Wired:
    """``edge run --wiring tests.agent.doubles:build_wired``: the real run command on port doubles."""
    from edge.events.sink import MemorySink

    gallery = MemoryGallery()
    gallery.slots[5] = SUBJECT_ON_SENSOR
    consent = MemoryConsent(consents={(SUBJECT_ON_SENSOR, "fingerprint")})
    return Wired(
        gallery=gallery,
        consent=consent,
        sink=MemorySink(),
        fingerprint=RepeatingSensor,
        subjects=lambda: [SUBJECT_ON_SENSOR],
    )
