"""What the gate loop needs from the other subsystems, as small typing.Protocols.

The gate loop is written and tested against these ports only. The real implementations (the face
pipeline in ``edge.vision``, the fingerprint library in ``edge.fingerprint``, the gallery in
``edge.gallery``, the consent ledger in ``edge.consent``, the event sink in ``edge.events``) satisfy
them directly or through a few-line adapter in ``edge.agent.wiring``. Result types are read-only
attribute protocols, so frozen dataclasses and named tuples both fit.

Privacy by construction: the only biometric values crossing a port are the embedding inside a
``FaceObservation`` (camera thread -> gate thread, in memory) and the probe handed to
``GalleryPort.search``. Neither is ever put in an event, a log record or a file by the gate loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from edge.credentials.authorise import EntryLike
from edge.fingerprint.api import Identified

#: A camera frame (height x width x 3, BGR, uint8 from a real camera); it lives only on the camera
#: thread, for one step.
Frame = NDArray[np.generic]
#: An L2-normalised face embedding; in memory only, never in an event, log record or file.
Embedding = NDArray[np.float32]
#: Which face of several the pipeline takes: the gate's rule, or the one nearest the centre.
Rule = Literal["gate", "center"]

# --------------------------------------------------------------------------- camera and face


class CameraPort(Protocol):
    """``edge.vision`` cameras: a BGR frame, or None when no frame is ready yet."""

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class FaceQualityLike(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def reasons(self) -> Sequence[str]: ...


class FaceObservation(Protocol):
    """``edge.vision.FaceResult``: an L2-normalised embedding and the quality verdict."""

    @property
    def embedding(self) -> Embedding: ...

    @property
    def quality(self) -> FaceQualityLike: ...

    @property
    def attack(self) -> bool:
        """The liveness check called this face an attack: it has no embedding and is never searched."""

    @property
    def live_score(self) -> float | None:
        """The passive live score (None without a liveness check); stays on the camera thread."""

    @property
    def box(self) -> tuple[float, float, float, float]: ...

    @property
    def points(self) -> NDArray[np.float32] | None:
        """FaceMesh landmarks when the pipeline was asked for them (the active challenge), else None."""


class FacePipelinePort(Protocol):
    want_points: bool  # probe() also returns landmarks (for the active liveness challenge)

    def process(self, frame: Frame, rule: Rule = "gate") -> FaceObservation | None:
        """The accurate embedding (as enrolled); None when the frame holds no face."""

    def probe(
        self, frame: Frame, rule: Rule = "gate", uncertain: Callable[[Embedding], bool] | None = None
    ) -> FaceObservation | None:
        """The fast embedding, replaced by the accurate one when ``uncertain(fast)`` is true."""


@dataclass(frozen=True)
class FaceEscalation:
    """When a fast probe is re-embedded: its best gallery score within ``band`` of ``centre``."""

    centre: float
    band: float

    def uncertain(self, score: float) -> bool:
        return abs(score - self.centre) <= self.band


# --------------------------------------------------------------------------- fingerprint


class FingerprintPort(Protocol):
    """``edge.fingerprint.workflows.SensorWorkflows``: it erases queued slots before each read."""

    def identify(self, timeout_s: float) -> Identified:
        """Wait up to ``timeout_s`` for a finger: ``NoFinger``, ``NoMatch`` or ``Match(slot, score)``.
        Raises HardwareError on failure."""

    def empty(self) -> None:
        """Erase every template in the sensor's library (the tamper response)."""

    def ring(self, colour: str | None) -> None:
        """Show the site panel's LED colour on the sensor's ring (reader modes); None: the sensor's own."""

    def close(self) -> None: ...


# --------------------------------------------------------------------------- gallery


class SearchHit(Protocol):
    """Best subject (None for an empty gallery), its similarity and the margin to the next subject."""

    @property
    def subject(self) -> str | None: ...

    @property
    def score(self) -> float: ...

    @property
    def margin(self) -> float: ...


class GalleryPort(Protocol):
    def search(self, probe: Embedding, k: int = 2) -> SearchHit: ...

    def subject_for_slot(self, slot: int) -> str | None: ...


# --------------------------------------------------------------------------- consent and credentials


class ConsentPort(Protocol):
    @property
    def version(self) -> int | None:
        """The applied list's version (events name it), None before the first list."""

    def allows(self, subject: str, modality: str, purpose: str, now: float) -> bool: ...

    def is_stale(self, now: float) -> bool: ...

    def credential_subject(self, kind: str, value: str, now: float) -> str | None:
        """The subject whose entry allows this card/PIN/QR credential now, else None."""

    def entry(self, subject: str) -> EntryLike | None:
        """The subject's consent entry (its ``purposes`` are checked for credentials), else None."""


class CredentialLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def value(self) -> str: ...


class CredentialReaderPort(Protocol):
    def read(self, timeout_s: float) -> CredentialLike | None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- the terminal


class HostPort(Protocol):
    """What a health event reports about the terminal (``edge.ops.host.Host``)."""

    def outbox_depth(self) -> int: ...

    def software(self) -> str | None: ...

    def load1(self) -> float | None: ...

    def disk_free_mb(self) -> int | None: ...


# --------------------------------------------------------------------------- device checks for selftest


class SensorHealthPort(Protocol):
    """What ``edge-provision selftest`` asks of the fingerprint library (``FingerprintSensor``)."""

    @property
    def capacity(self) -> int: ...

    def template_count(self) -> int: ...

    def health(self) -> str:
        """A few words for the selftest line: what the sensor says about itself ("ok", or what is wrong)."""


# --------------------------------------------------------------------------- enrolment


class EnrolResultLike(Protocol):
    """``edge.gallery.EnrolResult``: the other subject this enrolment matched, if any."""

    @property
    def duplicate_of(self) -> str | None: ...


class EnrolGalleryPort(Protocol):
    def enrol(
        self,
        subject: str,
        modality: str,
        *,
        templates: Sequence[Embedding] = (),
        sensor_slot: int | None = None,
        model_id: str = "",
    ) -> EnrolResultLike: ...


T = TypeVar("T")


class EnrolmentPort(Protocol):
    """``edge.consent.enforce.Enforcer``: consent checked and the template written under one lock, and
    every enrolment and refusal audited (``enrolment`` / ``enrolment_refused``)."""

    def check_enrolment(self, subject: str, modality: str, now: float) -> None:
        """Raise ``EnrolmentRefused`` (audited) when consent does not allow it now."""

    def refuse(self, subject: str, modality: str, reason: str, now: float) -> None:
        """Audit a refusal the caller decided (``capture_failed``, ``duplicate``, ``presentation_attack``)."""

    def enrol(
        self, subject: str, modality: str, now: float, write: Callable[[], T], *, flagged: Callable[[T], bool] = ...
    ) -> T:
        """Run ``write`` under the lock if consent allows it; audit the outcome."""


class FingerEnrolOutcome(Protocol):
    """``edge.fingerprint.EnrolOutcome``: the slot stored (None if nothing was), or the slot it duplicates."""

    @property
    def slot(self) -> int | None: ...

    @property
    def duplicate_of(self) -> int | None: ...


class FingerEnrolPort(Protocol):
    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> FingerEnrolOutcome: ...

    def delete(self, slot: int) -> None: ...


class PanelReport(Protocol):
    """The reader modes' side of a grant (``edge.door.report.PanelReporter``)."""

    def number(self, subject: str) -> int | None:
        """The panel number of ``subject`` (from the signed list), or None."""

    def report(self, subject: str) -> None:
        """Send ``subject``'s panel number to the panel as a card read; raises when it cannot."""
