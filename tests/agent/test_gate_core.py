"""The gate's decisions, driven directly on GateCore with a fake clock and in-memory ports."""

from __future__ import annotations

import numpy as np
import pytest

from edge.agent.decide import LanePolicy
from edge.agent.face_step import face_seen
from edge.agent.gate import GateCore, GateSettings
from edge.agent.items import IDLE, FaceSeen
from edge.config.schema import PolicySection
from edge.door import DoorController, SimLines
from edge.errors import HardwareError
from edge.events.sink import MemorySink
from edge.fingerprint.api import NO_MATCH
from edge.modality import Modality
from edge.ops.metrics import Metrics
from tests.agent.doubles import (
    BrokenSink,
    Credential,
    FakeClock,
    Match,
    MemoryConsent,
    MemoryGallery,
    Observation,
    Quality,
    near,
    unit,
)

ALICE, BOB, CAROL = "s-alice-01", "s-bob-02", "s-carol-03"
THRESHOLD = 0.6


class Lane:
    def __init__(self, mode: str = "face_or_finger", sink: object | None = None, **policy: float) -> None:
        self.clock = FakeClock()
        self.gallery = MemoryGallery()
        self.consent = MemoryConsent()
        self.lines = SimLines()
        self.door = DoorController(self.lines)
        self.sink = MemorySink() if sink is None else sink
        self.metrics = Metrics()
        section = PolicySection(mode=mode, **policy)
        self.core = GateCore(
            gallery=self.gallery,
            consent=self.consent,
            policy=LanePolicy(section, THRESHOLD),
            door=self.door,
            sink=self.sink,  # type: ignore[arg-type]
            settings=GateSettings(gate="lane-3", door_pulse_s=section.door_pulse_s),
            clock=self.clock,
            metrics=self.metrics,
        )
        for seed, subject in enumerate((ALICE, BOB, CAROL)):
            self.gallery.faces[subject] = unit(seed)
        self.gallery.slots = {7: ALICE, 8: BOB}

    def face(self, subject_seed: int, noise_seed: int = 1) -> None:
        self.seen(Observation(near(unit(subject_seed), noise_seed)))

    def seen(self, observation: Observation | None) -> None:
        """What the camera thread does with a face (``face_seen``), then the gate's decision."""
        item = face_seen(observation, self.gallery)
        if isinstance(item, FaceSeen):
            self.core.on_face(item.hit)

    def access(self) -> list[dict[str, object]]:
        assert isinstance(self.sink, MemorySink)
        return self.sink.of_kind("access")

    def alarms(self) -> list[dict[str, object]]:
        assert isinstance(self.sink, MemorySink)
        return self.sink.of_kind("alarm")


def test_consenting_enrolled_face_opens_the_door_and_emits_a_grant() -> None:
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    lane.face(0)
    assert lane.access() == [
        {"door": "lane-3", "decision": "granted", "modality": "face", "subject": ALICE, "reason": "granted"}
    ]
    assert lane.door.relay_energised
    lane.clock.advance(3.0)
    lane.core.tick()
    assert not lane.lines.energised


def test_enrolled_face_without_face_consent_is_denied_and_named_nowhere() -> None:
    lane = Lane()
    lane.consent.consents.add((BOB, "fingerprint"))  # Bob consented to fingerprints only
    lane.face(1)
    assert lane.access() == [
        {"door": "lane-3", "decision": "denied", "modality": "face", "subject": None, "reason": "no_consent"}
    ]
    assert not lane.lines.history[-1][1], "the door opened for a face without consent"
    lane.core.on_finger(Match(8, 120))
    assert lane.access()[-1]["decision"] == "granted"
    assert lane.access()[-1]["modality"] == "fingerprint"


def test_consent_for_another_purpose_does_not_open_this_gate() -> None:
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    lane.consent.purpose = "access:car-park"
    lane.face(0)
    assert lane.access()[-1]["reason"] == "no_consent"


def test_a_face_in_view_for_many_frames_is_one_passage() -> None:
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    for frame in range(20):
        lane.face(0, noise_seed=frame)
        lane.clock.advance(0.1)
    assert [e["decision"] for e in lane.access()] == ["granted"]
    assert len(lane.door.pulses) == 1
    lane.clock.advance(5.0)  # Alice comes back later: a new passage
    lane.face(0, noise_seed=99)
    assert len(lane.door.pulses) == 2


def test_poor_quality_faces_are_not_attempts() -> None:
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    lane.seen(Observation(unit(0), Quality(ok=False, reasons=("blur",))))
    lane.seen(None)
    assert lane.access() == []
    assert lane.gallery.searches == 0


def test_repeated_unknown_faces_back_off_and_the_backoff_grows() -> None:
    lane = Lane(failures_before_backoff=5, backoff_s=30.0, backoff_growth=2.0)
    lane.consent.consents.add((ALICE, "face"))
    stranger = 500
    for attempt in range(5):
        # the same stranger within the deny interval is one attempt, not ten
        for frame in range(10):
            lane.face(stranger + attempt, noise_seed=frame)
            lane.clock.advance(0.1)
        lane.clock.advance(2.0)
    reasons = [e["reason"] for e in lane.access()]
    assert reasons == ["no_match"] * 5 + ["backoff"]  # the fifth stranger's later frames meet the back-off
    lane.face(0)  # Alice, consenting and enrolled, while the lane backs off
    assert len(lane.access()) == 7
    assert lane.access()[-1] == {
        "door": "lane-3",
        "decision": "denied",
        "modality": "face",
        "subject": None,
        "reason": "backoff",
    }
    assert not lane.door.pulses
    lane.clock.advance(30.0)
    for attempt in range(5):  # the next five failures back off twice as long
        lane.face(stranger + attempt)
        lane.clock.advance(2.1)
    lane.clock.advance(50.0)
    lane.face(0)
    assert lane.access()[-1]["reason"] == "backoff", "the second back-off did not grow to 60 s"
    lane.clock.advance(10.0)
    lane.face(0)
    assert lane.access()[-1]["decision"] == "granted"


def test_low_margin_between_two_subjects_is_refused() -> None:
    lane = Lane(margin=0.3)
    lane.consent.consents |= {(ALICE, "face"), (BOB, "face")}
    blend = unit(0) + unit(1)
    lane.seen(Observation(np.asarray(blend / (blend @ blend) ** 0.5, dtype=np.float32)))
    assert lane.access()[-1]["reason"] in ("low_margin", "no_match")
    assert not lane.door.pulses


def test_stale_consent_list_stops_biometrics_but_not_cards() -> None:
    """Staleness was alarmed twice, by the gate (``consent_stale``) and by the enforcer
    (``consent_list_stale``). The enforcer owns it now (tests/consent: one ``consent_stale`` alarm);
    the gate denies, blinks the status LED and raises no alarm of its own."""
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    lane.consent.credentials[("card", "04A1B2")] = CAROL
    lane.consent.stale = True
    lane.face(0)
    assert lane.access()[-1]["reason"] == "consent_stale"
    assert lane.alarms() == []
    lane.core.tick()
    lane.clock.advance(1.0)
    lane.core.tick()
    assert len(lane.lines.led_history) >= 1  # blinking: the LED changed state while stale
    lane.core.on_credential(Credential("card", "04A1B2"))
    assert lane.access()[-1] == {
        "door": "lane-3",
        "decision": "granted",
        "modality": "card",
        "subject": CAROL,
        "reason": "granted",
    }
    lane.consent.stale = False
    lane.clock.advance(1.0)
    lane.core.tick()
    lane.clock.advance(1.0)
    lane.core.tick()
    assert lane.alarms() == []
    assert lane.lines.status_led is True  # steady again


def test_unknown_card_is_denied() -> None:
    lane = Lane()
    lane.core.on_credential(Credential("card", "FFFF"))
    assert lane.access()[-1]["reason"] == "unknown_credential"
    assert not lane.door.pulses


def test_a_credential_kind_the_config_disables_is_refused_even_when_known() -> None:
    """``[credentials] pin = false`` / ``qr = false`` were read by nothing: a known PIN opened the door
    at a gate configured for cards only. Tried: a known PIN and a known card at a card-only gate."""
    lane = Lane()
    lane.core.settings.credential_kinds = frozenset({Modality.card})
    lane.consent.credentials[("pin", "482913")] = CAROL
    lane.consent.credentials[("card", "04A1B2")] = CAROL
    lane.core.on_credential(Credential("pin", "482913"))
    assert lane.access()[-1] == {
        "door": "lane-3",
        "decision": "denied",
        "modality": "pin",
        "subject": None,
        "reason": "kind_disabled",
    }
    assert not lane.door.pulses
    lane.core.on_credential(Credential("card", "04A1B2"))
    assert lane.access()[-1]["decision"] == "granted"


def test_a_credential_whose_entry_does_not_cover_this_gates_purpose_is_refused() -> None:
    """The gate checked only that a credential was known, not the purpose its subject consented to.
    Tried: a known card of a subject whose entry lists another site's purpose."""
    lane = Lane()
    lane.consent.credentials[("card", "04A1B2")] = CAROL
    lane.consent.purposes[CAROL] = {"access:warehouse"}
    lane.core.on_credential(Credential("card", "04A1B2"))
    assert lane.access()[-1]["reason"] == "purpose_not_allowed"
    assert lane.access()[-1]["subject"] is None
    assert not lane.door.pulses


def test_face_and_card_needs_both_factors_for_the_same_subject() -> None:
    lane = Lane(mode="face_and_card")
    lane.consent.consents |= {(ALICE, "face"), (BOB, "face")}
    lane.consent.credentials[("card", "A")] = ALICE
    lane.consent.credentials[("card", "B")] = BOB
    lane.consent.credentials[("card", "C")] = CAROL  # Carol never consented to biometrics
    lane.face(0)
    assert lane.access() == []
    assert not lane.door.pulses, "one factor opened a two-factor gate"
    lane.core.on_credential(Credential("card", "B"))  # Bob's card does not complete Alice's face
    assert not lane.door.pulses
    lane.clock.advance(1.0)
    lane.core.on_credential(Credential("card", "A"))
    # a two-factor grant: reported by its biometric factor, the reason naming both factors
    assert (lane.access()[-1]["modality"], lane.access()[-1]["reason"]) == ("face", "granted_two_factor")
    assert lane.access()[-1]["subject"] == ALICE
    assert b'gate_access_decisions_total{modality="face+card",outcome="granted"} 1.0' in lane.metrics.render()
    lane.core.on_credential(Credential("card", "C"))  # the non-biometric way through
    assert lane.access()[-1] == {
        "door": "lane-3",
        "decision": "granted",
        "modality": "card",
        "subject": CAROL,
        "reason": "granted",
    }


def test_second_factor_outside_the_window_does_not_pair() -> None:
    lane = Lane(mode="face_and_card")
    lane.consent.consents.add((ALICE, "face"))
    lane.consent.credentials[("card", "A")] = ALICE
    lane.face(0)
    lane.clock.advance(11.0)
    lane.core.on_credential(Credential("card", "A"))
    assert not lane.door.pulses


def test_device_failure_raises_an_alarm_once_and_recovery_clears_it(caplog: pytest.LogCaptureFixture) -> None:
    lane = Lane()
    lane.core.device_ok("camera")
    lane.core.device_failed("camera", HardwareError("unplugged"))
    lane.core.device_failed("camera", HardwareError("still unplugged"))
    assert lane.alarms() == [{"code": "device_failed", "severity": "warning", "state": "raised", "component": "camera"}]
    assert "camera failed (HardwareError)" in caplog.text  # the error's class is logged, never published
    lane.core.emit_health()
    assert isinstance(lane.sink, MemorySink)
    health = lane.sink.of_kind("health")[-1]
    assert health["modalities"] == []  # the camera is down: no face
    assert lane.core.active_alarms == {"device_failed:camera"}
    lane.core.device_ok("camera")
    assert lane.alarms()[-1] == {
        "code": "device_failed",
        "severity": "warning",
        "state": "cleared",
        "component": "camera",
    }
    assert b'gate_device_up{device="camera"} 1.0' in lane.metrics.render()


def test_a_failing_event_sink_never_keeps_the_door_shut() -> None:
    sink = BrokenSink()
    lane = Lane(sink=sink)
    lane.consent.consents.add((ALICE, "fingerprint"))
    lane.core.on_finger(Match(7, 120))
    assert lane.door.relay_energised
    assert sink.calls == 1
    assert b"gate_event_sink_errors_total 1.0" in lane.metrics.render()


def test_unknown_finger_is_a_failure_and_forced_door_is_an_alarm() -> None:
    lane = Lane()
    lane.core.on_finger(NO_MATCH)
    assert lane.access()[-1]["reason"] == "no_match"
    lane.core.tick()
    lane.lines.set_door_closed(False)
    lane.core.tick()
    assert lane.alarms()[-1] == {"code": "door_forced_open", "severity": "critical", "state": "raised"}
    lane.lines.set_door_closed(True)
    lane.core.tick()
    assert lane.alarms()[-1]["state"] == "cleared"


def test_exit_button_opens_without_an_access_event() -> None:
    lane = Lane()
    lane.core.tick()
    lane.lines.press_exit()
    lane.core.tick()
    assert lane.door.relay_energised
    assert lane.access() == []


@pytest.mark.parametrize("mode", ["face_or_finger", "any"])
def test_fingerprint_slot_without_subject_is_no_match(mode: str) -> None:
    lane = Lane(mode=mode)
    lane.core.on_finger(Match(99, 120))
    assert lane.access()[-1]["reason"] == "no_match"


def test_passage_memory_is_pruned_over_time() -> None:
    lane = Lane()
    lane.consent.consents |= {(ALICE, "face"), (BOB, "fingerprint")}
    lane.face(0)
    lane.core.on_finger(Match(8, 120))
    assert len(lane.core._last_grant) == 2
    lane.clock.advance(61.0)
    lane.core.tick()
    assert lane.core._last_grant == {}


def test_a_failing_door_relay_raises_an_alarm_and_the_decision_is_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane = Lane()
    lane.consent.consents.add((ALICE, "fingerprint"))
    lane.lines.closed_lines = True  # the relay line is gone: set_relay raises
    lane.core.on_finger(Match(7, 120))
    assert lane.access()[-1]["decision"] == "granted"
    assert lane.alarms()[-1] == {
        "code": "device_failed",
        "severity": "warning",
        "state": "raised",
        "component": "door",
    }
    assert "door failed (RuntimeError)" in caplog.text
    lane.lines.closed_lines = False
    lane.clock.advance(6.0)
    lane.core.on_finger(Match(7, 120))
    assert lane.alarms()[-1]["state"] == "cleared"
    assert lane.lines.energised


def test_the_status_led_is_steady_while_well_and_blinks_while_an_alarm_is_active() -> None:
    lane = Lane()

    def led_over(seconds: float) -> list[bool]:
        states = []
        for _ in range(int(seconds / 0.25)):
            lane.core.tick()
            states.append(lane.lines.status_led)
            lane.clock.advance(0.25)
        return states

    assert set(led_over(2.0)) == {True}  # steady on
    lane.core.device_failed("camera", OSError("unplugged"))
    blinking = led_over(2.0)
    assert blinking.count(True) == blinking.count(False) == 4  # 1 Hz: 0.5 s on, 0.5 s off
    lane.core.device_ok("camera")
    assert set(led_over(1.0)) == {True}
    lane.door.close()
    assert lane.lines.status_led is False  # dark once the agent stops


def test_a_presentation_attack_is_refused_audited_and_alarmed_after_three() -> None:
    """Tried: a face the camera thread's liveness check refused (a photo of Alice, who consents and
    is enrolled). It is never searched: a denial with reason presentation_attack and no subject, one
    audit record per attack with no score, the door stays shut; the third attack within the window
    raises one alarm, which clears when the window has been quiet."""
    lane = Lane()
    lane.consent.consents.add((ALICE, "face"))
    audit: list[tuple[str, dict[str, object]]] = []
    lane.core.audit = lambda kind, details: audit.append((kind, dict(details)))
    photo = Observation(near(unit(0), 1)[:0], attack=True)  # no embedding: an attack is never embedded
    assert face_seen(photo, lane.gallery) == IDLE  # never searched, whatever else happens
    for i in range(3):
        lane.core.on_attack()
        lane.clock.advance(lane.core.settings.deny_interval_s + 0.1)
        assert len(audit) == i + 1
    assert [a["decision"] for a in lane.access()] == ["denied"] * 3
    assert {a["reason"] for a in lane.access()} == {"presentation_attack"}
    assert all("subject" not in a or a["subject"] is None for a in lane.access())
    assert not lane.door.pulses
    assert [k for k, _ in audit] == ["presentation_attack"] * 3
    assert audit[-1][1] == {"door": "lane-3", "recent": 3, "window_s": 300.0}
    assert [(a["code"], a["state"]) for a in lane.alarms()] == [("presentation_attack", "raised")]
    assert lane.metrics.attacks._value.get() == 3
    lane.clock.advance(301.0)
    lane.core.tick()
    assert [(a["code"], a["state"]) for a in lane.alarms()][-1] == ("presentation_attack", "cleared")


def test_attacks_spread_wider_than_the_window_raise_no_alarm() -> None:
    lane = Lane()
    for _ in range(4):
        lane.core.on_attack()
        lane.clock.advance(200.0)
        lane.core.tick()
    assert lane.alarms() == []
    assert len(lane.access()) == 4
