"""Enrolment workflows against the agent's ports: consent first, live quality feedback, and a
report of what was stored (counts and slots, never a template).

Every decision goes through the consent enforcer (``EnrolmentPort``): it checks consent before the
capture, and again under its lock while the template is written (a withdrawal can arrive in
between, and cannot slip between the check and the write); it audits every enrolment
(``enrolment``) and every refusal (``enrolment_refused``: no consent, stale list, a failed capture,
a duplicate finger). A failure after the sensor stored a template deletes that template, so a
refused or failed enrolment leaves nothing behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.agent.ports import (
    CameraPort,
    EnrolGalleryPort,
    EnrolmentPort,
    EnrolResultLike,
    FacePipelinePort,
    FingerEnrolPort,
)
from edge.errors import EdgeError, HardwareError
from edge.events.kinds import Enrolment
from edge.events.sink import EventSink
from edge.modality import Modality

log = logging.getLogger(__name__)

Feedback = Callable[[str], None]


@dataclass
class EnrolReport:
    modality: str
    stored: int  # templates stored in the gallery (face) or 1 for a sensor slot
    sensor_slot: int | None = None
    duplicate_of: str | None = None  # another subject this one matched (flagged for review)
    frames_seen: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # quality reason -> frames refused for it
    shared_with: int = 0  # site sync: gates a sealed copy was sent to


def _enrolled(subject: str, modality: Modality, duplicate_of: str | None) -> Enrolment:
    """The published enrolment event: no counts of templates, no template."""
    return Enrolment(subject, modality, "enrolled", "possible_duplicate" if duplicate_of else None)


def _flagged(result: EnrolResultLike) -> bool:
    return result.duplicate_of is not None


def enrol_face(
    subject: str,
    *,
    enforcer: EnrolmentPort,
    camera: CameraPort,
    pipeline: FacePipelinePort,
    gallery: EnrolGalleryPort,
    model_id: str,
    sink: EventSink,
    wanted: int = 5,
    timeout_s: float = 30.0,
    feedback: Feedback = lambda _text: None,
    wall: Callable[[], float] = time.time,
    challenge: bool = False,
    share: Callable[[str, list[Any]], list[str]] | None = None,
) -> EnrolReport:
    """``challenge``: first a random active liveness challenge (blink or head turn, edge.vision.challenge),
    as ``[face] liveness = "challenge"`` asks; not answered in time refuses the enrolment as an attack."""
    enforcer.check_enrolment(subject, "face", wall())
    if challenge:
        _face_challenge(subject, enforcer, camera, pipeline, timeout_s, feedback, wall)
    report = EnrolReport("face", 0)
    embeddings: list[Any] = []
    last_hint = ""
    deadline = time.monotonic() + timeout_s
    while len(embeddings) < wanted and time.monotonic() < deadline:
        frame = camera.read()
        if frame is None:
            time.sleep(0.01)
            continue
        report.frames_seen += 1
        observation = pipeline.process(frame, rule="gate")
        del frame
        if observation is None:
            hint = "no face: look at the camera"
            report.rejected["no_face"] = report.rejected.get("no_face", 0) + 1
        elif observation.attack:
            embeddings.clear()  # nothing captured in a session that showed an attack is kept
            raise _refuse_attack(subject, enforcer, wall)
        elif not observation.quality.ok:
            reasons = list(observation.quality.reasons) or ["quality"]
            for reason in reasons:
                report.rejected[reason] = report.rejected.get(reason, 0) + 1
            hint = "adjust: " + ", ".join(reasons)
        else:
            embeddings.append(observation.embedding)
            hint = f"captured {len(embeddings)}/{wanted}"
        if hint != last_hint:
            feedback(hint)
            last_hint = hint
    if len(embeddings) < wanted:
        enforcer.refuse(subject, "face", "capture_failed", wall())
        raise HardwareError(
            f"only {len(embeddings)} of {wanted} good frames in {timeout_s:.0f} s; nothing was stored",
            hint="improve lighting, face the camera squarely, one person in view",
        )
    try:
        result = enforcer.enrol(
            subject,
            "face",
            wall(),
            lambda: gallery.enrol(subject, "face", templates=embeddings, model_id=model_id),
            flagged=_flagged,
        )
        if share is not None:  # site sync: sealed for the gates in the person's scope, while still in memory
            report.shared_with = len(_share_safely(share, subject, embeddings))
    finally:
        embeddings.clear()
    report.stored = wanted
    report.duplicate_of = result.duplicate_of
    sink.emit(_enrolled(subject, Modality.face, result.duplicate_of))
    return report


def _refuse_attack(subject: str, enforcer: EnrolmentPort, wall: Callable[[], float]) -> HardwareError:
    enforcer.refuse(subject, "face", "presentation_attack", wall())
    return HardwareError(
        "the liveness check saw a photo or a screen, not a live face; nothing was stored",
        hint="the person must stand in front of the camera themselves; if they did, improve the "
        "lighting (no back light, no glare) and try again",
    )


def _face_challenge(
    subject: str,
    enforcer: EnrolmentPort,
    camera: CameraPort,
    pipeline: FacePipelinePort,
    timeout_s: float,
    feedback: Feedback,
    wall: Callable[[], float],
) -> None:
    """A random blink or head turn before any frame is kept; raises (audited) when not answered."""
    from edge.vision.challenge import ChallengeSession, Outcome, draw

    session = ChallengeSession(draw(), started=time.monotonic(), timeout_s=min(timeout_s, 10.0))
    feedback(session.challenge.prompt)
    pipeline.want_points = True
    try:
        while True:
            frame = camera.read()
            if frame is None:
                time.sleep(0.01)
                if session.observe(None, time.monotonic()) is Outcome.FAILED:
                    break
                continue
            observation = pipeline.process(frame, rule="gate")
            del frame
            if observation is not None and observation.attack:
                raise _refuse_attack(subject, enforcer, wall)
            outcome = session.observe(observation.points if observation is not None else None, time.monotonic())
            if outcome is Outcome.PASSED:
                feedback("liveness challenge passed")
                return
            if outcome is Outcome.FAILED:
                break
    finally:
        pipeline.want_points = False
    raise _refuse_attack(subject, enforcer, wall)


def _share_safely(share: Callable[[str, Any], list[str]], subject: str, what: Any) -> list[str]:
    """Sharing is best effort: the local enrolment stands; a failure is logged and the operator can
    enrol at the other gates."""
    try:
        return share(subject, what)
    except Exception as exc:
        log.error("sharing the enrolment with the other gates failed: %s", exc.__class__.__name__)
        return []


class DuressMarks(Protocol):
    def mark(self, slot: int, duress: bool) -> None: ...


def enrol_finger(
    subject: str,
    *,
    enforcer: EnrolmentPort,
    sensor: FingerEnrolPort,
    gallery: EnrolGalleryPort,
    sink: EventSink,
    captures: int = 2,
    timeout_s: float = 10.0,
    feedback: Feedback = lambda _text: None,
    wall: Callable[[], float] = time.time,
    duress: bool = False,
    duress_slots: DuressMarks | None = None,
    share: Callable[[str, int], list[str]] | None = None,
) -> EnrolReport:
    """``duress``: this finger is the person's duress finger (opens the door like any other and sends
    the site a silent alarm). Every finger enrolment sets or clears its slot's flag."""
    if duress and duress_slots is None:
        raise EdgeError("this terminal keeps no duress fingers", hint="enrol without --duress")
    enforcer.check_enrolment(subject, "fingerprint", wall())
    try:
        outcome = sensor.enrol(feedback, captures, timeout_s)
    except HardwareError:
        enforcer.refuse(subject, "fingerprint", "capture_failed", wall())
        raise
    slot = outcome.slot
    if outcome.duplicate_of is not None:
        if slot is not None:
            sensor.delete(slot)
        enforcer.refuse(subject, "fingerprint", "duplicate", wall())
        raise EdgeError(
            f"this finger is already enrolled in sensor slot {outcome.duplicate_of}; nothing was stored",
            hint="enrol another finger, or delete the existing enrolment first",
        )
    if slot is None:
        enforcer.refuse(subject, "fingerprint", "capture_failed", wall())
        raise HardwareError("the sensor stored nothing", hint="run the enrolment again")
    stored = slot
    try:
        result = enforcer.enrol(
            subject,
            "fingerprint",
            wall(),
            lambda: gallery.enrol(subject, "fingerprint", sensor_slot=stored),
            flagged=_flagged,
        )
    except BaseException:
        sensor.delete(slot)  # no orphan template left in the sensor
        raise
    if duress_slots is not None:
        duress_slots.mark(slot, duress)
    sink.emit(_enrolled(subject, Modality.fingerprint, result.duplicate_of))
    report = EnrolReport("fingerprint", 1, sensor_slot=slot, duplicate_of=result.duplicate_of)
    if share is not None and not duress:  # a duress finger is this gate's secret; it is not shared
        report.shared_with = len(_share_safely(share, subject, slot))
    return report
