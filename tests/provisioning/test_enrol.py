"""Enrolment against port doubles: consent first and last, quality feedback, nothing left on failure."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edge.agent.ports import Embedding, Frame, Rule
from edge.errors import ConsentError, EdgeError, HardwareError
from edge.events.sink import MemorySink
from provisioning.enrol import EnrolReport, enrol_face, enrol_finger
from tests.agent.doubles import MemoryConsent, MemoryEnforcer, Observation, Quality, near, unit
from tests.provisioning.conftest import Run

SUBJECT = "s-erin-55"


@dataclass(frozen=True)
class Enrolled:
    duplicate_of: str | None = None


@dataclass
class EnrolGallery:
    """Gallery double: stores what it is given; flags a face close to an existing subject."""

    faces: dict[str, list[Embedding]] = field(default_factory=dict)
    slots: dict[int, str] = field(default_factory=dict)
    fail: bool = False

    def enrol(
        self,
        subject: str,
        modality: str,
        *,
        templates: Sequence[Embedding] = (),
        sensor_slot: int | None = None,
        model_id: str = "",
    ) -> Enrolled:
        if self.fail:
            raise OSError("disk full")
        if modality == "face":
            duplicate = next(
                (s for s, ts in self.faces.items() if s != subject and float(ts[0] @ templates[0]) > 0.8), None
            )
            self.faces[subject] = list(templates)
            return Enrolled(duplicate)
        assert sensor_slot is not None
        self.slots[sensor_slot] = subject
        return Enrolled()


#: What the camera sees, shot by shot: what the pipeline makes of the frame (None: no face in it).
Shots = Iterator[Observation | None]


class Scene:
    """A camera and a pipeline over the same shots: the camera's frame numbers the shot, and the
    pipeline returns that shot's observation. After the last shot every frame holds no face."""

    def __init__(self, shots: Callable[[], Shots]) -> None:
        self.make = shots
        self.shots = shots()
        self.shown: list[Observation | None] = []
        self.want_points = False

    def camera(self) -> Scene:
        """The camera opened again (the next enrolment): the shots from the first."""
        self.shots, self.shown = self.make(), []
        return self

    def read(self) -> Frame:
        self.shown.append(next(self.shots, None))
        return np.array([len(self.shown) - 1])

    def close(self) -> None:
        pass

    def process(self, frame: Frame, rule: Rule = "gate") -> Observation | None:
        # the pipeline knows "gate" and "center"; enrolment asked for "enrol", which the pipeline
        # silently took as "gate" (found when the port's rule became a Literal): it says "gate" now
        assert rule == "gate"
        return self.shown[int(frame[0])]

    def probe(
        self, frame: Frame, rule: Rule = "gate", uncertain: Callable[[Embedding], bool] | None = None
    ) -> Observation | None:
        return self.process(frame, rule)


def face_frames() -> Shots:
    yield None
    yield Observation(unit(0), Quality(False, ("blur",)))
    yield Observation(unit(0), Quality(False, ("blur",)))
    for i in range(10):
        yield Observation(near(unit(0), i))


def run_face(
    consent: MemoryConsent | MemoryEnforcer,
    gallery: EnrolGallery,
    sink: MemorySink,
    *,
    frames: Shots | None = None,
    timeout_s: float = 5.0,
    challenge: bool = False,
) -> tuple[EnrolReport, list[str]]:
    messages: list[str] = []
    scene = Scene((lambda: frames) if frames is not None else face_frames)
    report = enrol_face(
        SUBJECT,
        enforcer=consent if isinstance(consent, MemoryEnforcer) else MemoryEnforcer(consent),
        camera=scene,
        pipeline=scene,
        gallery=gallery,
        model_id="dlib-resnet-v1-float32",
        sink=sink,
        feedback=messages.append,
        timeout_s=timeout_s,
        challenge=challenge,
    )
    return report, messages


def test_face_enrolment_without_consent_is_refused_before_any_capture() -> None:
    gallery, sink = EnrolGallery(), MemorySink()
    consent = MemoryConsent(consents={(SUBJECT, "fingerprint")})
    read: list[int] = []

    def frames() -> Shots:
        read.append(1)
        yield None

    with pytest.raises(ConsentError, match="no active consent for face"):
        run_face(consent, gallery, sink, frames=frames())
    assert read == []
    assert gallery.faces == {}
    assert sink.events == []


def test_face_enrolment_guides_and_stores_only_good_frames() -> None:
    gallery, sink = EnrolGallery(), MemorySink()
    consent = MemoryConsent(consents={(SUBJECT, "face")})
    report, messages = run_face(consent, gallery, sink)
    assert report.stored == 5
    assert report.rejected == {"no_face": 1, "blur": 2}
    assert messages[:3] == ["no face: look at the camera", "adjust: blur", "captured 1/5"]
    assert messages[-1] == "captured 5/5"
    assert len(gallery.faces[SUBJECT]) == 5
    assert sink.events == [("enrolment", {"subject": SUBJECT, "modality": "face", "result": "enrolled"})]


def test_face_matching_another_subject_is_flagged() -> None:
    gallery, sink = EnrolGallery(faces={"s-other": [unit(0)]}), MemorySink()
    report, _ = run_face(MemoryConsent(consents={(SUBJECT, "face")}), gallery, sink)
    assert report.duplicate_of == "s-other"
    assert sink.events[-1][1]["reason"] == "possible_duplicate"


def test_consent_withdrawn_during_capture_stores_nothing() -> None:
    gallery, sink = EnrolGallery(), MemorySink()
    consent = MemoryConsent(consents={(SUBJECT, "face")})

    def frames() -> Shots:
        for i in itertools.count():
            if i == 3:
                consent.consents.clear()  # the withdrawal arrives mid-capture
            yield Observation(near(unit(0), i))

    with pytest.raises(ConsentError):
        run_face(consent, gallery, sink, frames=frames())
    assert gallery.faces == {}
    assert sink.events == []


def test_too_few_good_frames_is_an_error_and_stores_nothing() -> None:
    gallery = EnrolGallery()
    blurred = itertools.repeat(Observation(unit(0), Quality(False, ("blur",))))
    with pytest.raises(HardwareError, match="only 0 of 5 good frames"):
        run_face(MemoryConsent(consents={(SUBJECT, "face")}), gallery, MemorySink(), frames=blurred, timeout_s=0.2)
    assert gallery.faces == {}


@dataclass(frozen=True)
class Outcome:
    slot: int | None
    duplicate_of: int | None = None


class Sensor:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.deleted: list[int] = []

    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> Outcome:
        for n in range(captures):
            prompt(f"place finger ({n + 1}/{captures})")
            prompt("lift finger")
        return self.outcome

    def delete(self, slot: int) -> None:
        self.deleted.append(slot)


def run_finger(
    sensor: Sensor, gallery: EnrolGallery, consent: MemoryConsent | None = None, audit: MemoryEnforcer | None = None
) -> object:
    enforcer = audit or MemoryEnforcer(consent or MemoryConsent(consents={(SUBJECT, "fingerprint")}))
    return enrol_finger(
        SUBJECT,
        enforcer=enforcer,
        sensor=sensor,
        gallery=gallery,
        sink=MemorySink(),
    )


def test_finger_enrolment_links_the_slot_to_the_subject() -> None:
    gallery, sensor = EnrolGallery(), Sensor(Outcome(slot=12))
    report = run_finger(sensor, gallery)
    assert report.sensor_slot == 12  # type: ignore[attr-defined]
    assert gallery.slots == {12: SUBJECT}
    assert sensor.deleted == []


def test_duplicate_finger_is_refused_and_its_new_copy_deleted() -> None:
    gallery, sensor = EnrolGallery(), Sensor(Outcome(slot=13, duplicate_of=4))
    with pytest.raises(EdgeError, match="already enrolled in sensor slot 4"):
        run_finger(sensor, gallery)
    assert sensor.deleted == [13]
    assert gallery.slots == {}


def test_gallery_failure_after_the_sensor_stored_deletes_the_sensor_template() -> None:
    gallery, sensor = EnrolGallery(fail=True), Sensor(Outcome(slot=14))
    with pytest.raises(OSError):
        run_finger(sensor, gallery)
    assert sensor.deleted == [14]


def test_finger_without_consent_never_touches_the_sensor() -> None:
    sensor = Sensor(Outcome(slot=1))
    with pytest.raises(ConsentError):
        run_finger(sensor, EnrolGallery(), MemoryConsent(consents={(SUBJECT, "face")}))
    assert sensor.deleted == []


def test_enrol_command_reports_counts_never_templates(provision: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioning.hooks import EnrolPorts

    assert provision("init", "--site", "s").code == 0
    unwired = provision("enrol", SUBJECT, "--modality", "face")
    assert unwired.code == 1  # no profile, models or gallery yet: one line saying what is missing
    assert unwired.err.startswith("error: ")
    assert unwired.err.count("\n") == 1

    gallery = EnrolGallery()
    scene = Scene(face_frames)
    ports = EnrolPorts(
        enforcer=MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "face")})),
        gallery=gallery,
        sink=MemorySink(),
        camera=scene.camera,
        pipeline=scene,
        model_id="m1",
    )
    monkeypatch.setattr("provisioning.hooks.enrol_ports", lambda state, modality=None: ports)
    result = provision("enrol", SUBJECT, "--modality", "face", "--json")
    assert result.code == 0, result.err
    assert result.json()["stored"] == 5
    stored = gallery.faces[SUBJECT][0]
    assert repr(float(stored[0]))[:8] not in result.out
    human = provision("enrol", SUBJECT, "--modality", "face")
    assert "captured 5/5" in human.out
    assert "templates stored" in human.out
    # the config's [face] enrol_frames is the default; --frames overrides it
    ports.face_frames = 3
    assert provision("enrol", SUBJECT, "--modality", "face", "--json").json()["stored"] == 3
    assert provision("enrol", SUBJECT, "--modality", "face", "--frames", "4", "--json").json()["stored"] == 4


def test_every_enrolment_and_refusal_is_audited_with_the_agreed_record_kinds() -> None:
    """Enrolment used to check the ledger itself and audit nothing (issue 17 item 3: after `edge demo`
    the audit log held no enrolment record). Tried: a refusal without consent, a good face, a flagged
    face, a capture that failed, a duplicate finger and a good finger; each leaves one record."""
    faces = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "face")}))
    with pytest.raises(ConsentError):
        run_finger(Sensor(Outcome(slot=1)), EnrolGallery(), audit=faces)
    run_face(faces, EnrolGallery(), MemorySink())
    run_face(faces, EnrolGallery(faces={"s-other": [unit(0)]}), MemorySink())
    blurred = itertools.repeat(Observation(unit(0), Quality(False, ("blur",))))
    with pytest.raises(HardwareError):
        run_face(faces, EnrolGallery(), MemorySink(), frames=blurred, timeout_s=0.2)
    fingers = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "fingerprint")}))
    with pytest.raises(EdgeError):
        run_finger(Sensor(Outcome(slot=13, duplicate_of=4)), EnrolGallery(), audit=fingers)
    run_finger(Sensor(Outcome(slot=12)), EnrolGallery(), audit=fingers)
    records = faces.audit + fingers.audit
    assert records == [
        ("enrolment_refused", {"subject": SUBJECT, "modality": "fingerprint", "reason": "no_consent"}),
        ("enrolment", {"subject": SUBJECT, "modality": "face", "result": "enrolled"}),
        ("enrolment", {"subject": SUBJECT, "modality": "face", "result": "duplicate_flagged"}),
        ("enrolment_refused", {"subject": SUBJECT, "modality": "face", "reason": "capture_failed"}),
        ("enrolment_refused", {"subject": SUBJECT, "modality": "fingerprint", "reason": "duplicate"}),
        ("enrolment", {"subject": SUBJECT, "modality": "fingerprint", "result": "enrolled"}),
    ]


def test_a_stale_list_refuses_enrolment_as_consent_stale() -> None:
    stale = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "face")}, stale=True))
    with pytest.raises(ConsentError, match="stale"):
        run_face(stale, EnrolGallery(), MemorySink())
    assert stale.audit == [("enrolment_refused", {"subject": SUBJECT, "modality": "face", "reason": "consent_stale"})]


def test_a_presentation_attack_refuses_the_enrolment_and_keeps_no_frame() -> None:
    """Tried: two good live frames, then one the liveness check calls an attack (someone holding up
    the person's photo mid-enrolment). Nothing is stored, not even the two good frames, the refusal
    is audited as presentation_attack and no enrolment event is emitted."""
    faces = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "face")}))
    gallery, sink = EnrolGallery(), MemorySink()
    frames = iter(
        [
            Observation(near(unit(0), 1)),
            Observation(near(unit(0), 2)),
            Observation(np.zeros(0, np.float32), attack=True),
        ]
        + [Observation(near(unit(0), i)) for i in range(3, 10)]
    )
    with pytest.raises(HardwareError, match="photo or a screen"):
        run_face(faces, gallery, sink, frames=frames)
    assert gallery.faces == {}
    assert sink.events == []
    assert faces.audit == [
        ("enrolment_refused", {"subject": SUBJECT, "modality": "face", "reason": "presentation_attack"})
    ]


def test_a_duress_finger_is_flagged_and_a_later_ordinary_enrolment_of_the_slot_clears_it(tmp_path: Path) -> None:
    from edge.access.duress import DuressSlots

    slots = DuressSlots(tmp_path / "duress.json")
    enforcer = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "fingerprint")}))
    common = {"enforcer": enforcer, "gallery": EnrolGallery(), "sink": MemorySink(), "duress_slots": slots}
    enrol_finger(SUBJECT, sensor=Sensor(Outcome(slot=21)), duress=True, **common)  # type: ignore[arg-type]
    assert 21 in DuressSlots(tmp_path / "duress.json")
    enrol_finger(SUBJECT, sensor=Sensor(Outcome(slot=21)), **common)  # type: ignore[arg-type]
    assert 21 not in DuressSlots(tmp_path / "duress.json")
    # a terminal without a duress store refuses --duress before touching the sensor
    sensor = Sensor(Outcome(slot=22))
    with pytest.raises(EdgeError, match="no duress fingers"):
        enrol_finger(SUBJECT, sensor=sensor, duress=True, enforcer=enforcer, gallery=EnrolGallery(), sink=MemorySink())


def test_challenge_enrolment_keeps_frames_only_after_a_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """[face] liveness = challenge: the person is asked to blink (the draw is fixed here; the random
    draw has its own test) and frames are kept only after one blink; a still face (a photo, or a
    video that does not blink) is refused as presentation_attack and nothing is stored."""
    import edge.vision.challenge as challenge
    from tests.vision.test_liveness_tracker import face_points

    monkeypatch.setattr(challenge, "draw", lambda: challenge.Challenge.BLINK)
    blink = [
        Observation(near(unit(0), i), points=face_points(o).astype(np.float32))
        for i, o in enumerate([0.3, 0.3, 0.05, 0.3])
    ]
    good = [Observation(near(unit(0), i)) for i in range(10, 20)]
    faces = MemoryEnforcer(MemoryConsent(consents={(SUBJECT, "face")}))
    gallery, sink = EnrolGallery(), MemorySink()
    report, messages = run_face(faces, gallery, sink, frames=iter(blink + good), challenge=True)
    assert messages[0] == "please blink"
    assert "liveness challenge passed" in messages
    assert report.stored == 5
    assert all(np.array_equal(t, near(unit(0), i)) for t, i in zip(gallery.faces[SUBJECT], range(10, 15), strict=True))

    still = itertools.repeat(Observation(near(unit(0), 1), points=face_points(0.3).astype(np.float32)))
    gallery = EnrolGallery()
    with pytest.raises(HardwareError, match="photo or a screen"):
        run_face(faces, gallery, MemorySink(), frames=still, challenge=True, timeout_s=0.5)
    assert gallery.faces == {}
    assert faces.audit[-1] == (
        "enrolment_refused",
        {"subject": SUBJECT, "modality": "face", "reason": "presentation_attack"},
    )
