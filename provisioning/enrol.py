"""Enrolment workflows against the agent's ports: consent first, live quality feedback, and a
report of what was stored (counts and slots, never a template).

Consent is checked before the capture and again just before storing (a withdrawal can arrive in
between). A failure after the sensor stored a template deletes that template, so a refused or
failed enrolment leaves nothing behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.agent.ports import CameraPort, ConsentPort, EnrolGalleryPort, FacePipelinePort, FingerEnrolPort
from edge.errors import ConsentError, EdgeError, HardwareError
from edge.events.sink import EventSink

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


def _enrolled(subject: str, modality: str, duplicate_of: str | None) -> dict[str, object]:
    """The published enrolment event (``edge.events.schema``): no counts of templates, no template."""
    body: dict[str, object] = {"subject": subject, "modality": modality, "result": "enrolled"}
    if duplicate_of:
        body["reason"] = "possible_duplicate"
    return body


def _require_consent(consent: ConsentPort, subject: str, modality: str, purpose: str, now: float) -> None:
    if consent.is_stale(now):
        raise ConsentError(
            "the cached consent list is stale: enrolment is stopped until a fresh list arrives",
            hint="check the broker connection, or apply a list with `edge consent apply FILE`",
        )
    if not consent.allows(subject, modality, purpose, now):
        raise ConsentError(
            f"no active consent for {modality} enrolment of this subject for {purpose}",
            hint="the site's consent authority must issue a list granting it; `edge consent show` lists entries",
        )


def enrol_face(
    subject: str,
    *,
    consent: ConsentPort,
    purpose: str,
    camera: CameraPort,
    pipeline: FacePipelinePort,
    gallery: EnrolGalleryPort,
    model_id: str,
    sink: EventSink,
    wanted: int = 5,
    timeout_s: float = 30.0,
    feedback: Feedback = lambda _text: None,
    wall: Callable[[], float] = time.time,
) -> EnrolReport:
    _require_consent(consent, subject, "face", purpose, wall())
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
        observation = pipeline.process(frame, rule="enrol")
        del frame
        if observation is None:
            hint = "no face: look at the camera"
            report.rejected["no_face"] = report.rejected.get("no_face", 0) + 1
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
        raise HardwareError(
            f"only {len(embeddings)} of {wanted} good frames in {timeout_s:.0f} s; nothing was stored",
            hint="improve lighting, face the camera squarely, one person in view",
        )
    _require_consent(consent, subject, "face", purpose, wall())
    result = gallery.enrol(subject, "face", templates=embeddings, model_id=model_id)
    embeddings.clear()
    report.stored = wanted
    report.duplicate_of = result.duplicate_of
    sink.emit("enrolment", _enrolled(subject, "face", result.duplicate_of))
    return report


def enrol_finger(
    subject: str,
    *,
    consent: ConsentPort,
    purpose: str,
    sensor: FingerEnrolPort,
    gallery: EnrolGalleryPort,
    sink: EventSink,
    captures: int = 2,
    timeout_s: float = 10.0,
    feedback: Feedback = lambda _text: None,
    wall: Callable[[], float] = time.time,
) -> EnrolReport:
    _require_consent(consent, subject, "fingerprint", purpose, wall())
    outcome = sensor.enrol(feedback, captures, timeout_s)
    slot = outcome.slot
    if outcome.duplicate_of is not None:
        if slot is not None:
            sensor.delete(slot)
        raise EdgeError(
            f"this finger is already enrolled in sensor slot {outcome.duplicate_of}; nothing was stored",
            hint="enrol another finger, or delete the existing enrolment first",
        )
    if slot is None:
        raise HardwareError("the sensor stored nothing", hint="run the enrolment again")
    try:
        _require_consent(consent, subject, "fingerprint", purpose, wall())
        result = gallery.enrol(subject, "fingerprint", sensor_slot=slot)
    except BaseException:
        sensor.delete(slot)  # no orphan template left in the sensor
        raise
    sink.emit("enrolment", _enrolled(subject, "fingerprint", result.duplicate_of))
    return EnrolReport("fingerprint", 1, sensor_slot=slot, duplicate_of=result.duplicate_of)
