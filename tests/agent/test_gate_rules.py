"""The door's access rules at the gate (issue 15): schedules and anti-passback in relay mode, and
the reader modes' grant reported to the site's panel as the person's panel number.

Driven on GateCore with a fake clock; the passback log is the real SQLite store, and the OSDP test
runs the real reader door against the simulated panel over a pty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.access.passback import PassbackLog
from edge.access.rules import StandaloneRules
from edge.agent.decide import LanePolicy
from edge.agent.gate import GateCore, GateSettings
from edge.config.schema import DoorSection, PolicySection
from edge.door import DoorController, SimLines
from edge.door.modes import credential_for
from edge.door.report import PanelReporter
from edge.events.sink import MemorySink
from tests.agent.doubles import Credential, FakeClock, MemoryConsent, MemoryGallery

ALICE = "s-alice-01"


@dataclass(frozen=True)
class Role:
    area: str
    direction: str


@dataclass
class RulesLedger:
    """The ledger's rule-side answers: schedules per subject, this gate's passback role, panel numbers."""

    closed_for: set[str] = field(default_factory=set)
    role: Role | None = None
    numbers: dict[str, int] = field(default_factory=dict)

    def in_schedule(self, subject: str, now: float) -> bool:
        return subject not in self.closed_for

    def passback(self) -> Role | None:
        return self.role

    def panel_number(self, subject: str) -> int | None:
        return self.numbers.get(subject)


def gate(rules: object = None, panel: object = None) -> tuple[GateCore, MemorySink, DoorController]:
    consent = MemoryConsent(credentials={("card", "1001"): ALICE})
    door = DoorController(SimLines())
    sink = MemorySink()
    kwargs: dict[str, object] = {}
    if rules is not None:
        kwargs["rules"] = rules
    if panel is not None:
        kwargs["panel"] = panel
    core = GateCore(
        gallery=MemoryGallery(),
        consent=consent,
        policy=LanePolicy(PolicySection(), 0.6),
        door=door,
        sink=sink,
        settings=GateSettings(gate="lane-1"),
        clock=FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )
    return core, sink, door


def reasons(sink: MemorySink) -> list[tuple[str, str]]:
    return [(str(e["decision"]), str(e["reason"])) for e in sink.of_kind("access")]


def test_outside_the_schedule_a_card_is_refused_and_the_door_stays_shut(tmp_path: Path) -> None:
    ledger = RulesLedger(closed_for={ALICE})
    core, sink, door = gate(StandaloneRules(ledger, None, "gw-0000000000000001"))
    core.on_credential(Credential("card", "1001"))
    assert reasons(sink) == [("denied", "out_of_schedule")]
    assert not door.pulses
    ledger.closed_for.clear()  # inside her window again
    core.on_credential(Credential("card", "1001"))
    assert reasons(sink)[-1][0] == "granted"
    assert len(door.pulses) == 1


def test_anti_passback_refuses_a_second_entry_until_the_person_leaves_and_survives_a_restart(tmp_path: Path) -> None:
    """Tried: Alice enters, hands her card back over the turnstile for a second entry (refused), the
    terminal restarts (the log is reopened from disk: still refused), she leaves by the exit gate of
    the same area (never refused), and enters again (granted)."""
    db = tmp_path / "passback.sqlite3"
    entry_ledger = RulesLedger(role=Role("car-park", "in"))
    log = PassbackLog(db)
    core, sink, _ = gate(StandaloneRules(entry_ledger, log, "gw-00000000000000e1"))
    core.on_credential(Credential("card", "1001"))
    core.on_credential(Credential("card", "1001"))
    assert [d for d, _ in reasons(sink)] == ["granted", "denied"]
    assert reasons(sink)[1] == ("denied", "anti_passback")
    log.close()
    log = PassbackLog(db)  # a restart
    core, sink, _ = gate(StandaloneRules(entry_ledger, log, "gw-00000000000000e1"))
    core.on_credential(Credential("card", "1001"))
    assert reasons(sink) == [("denied", "anti_passback")]
    exit_core, exit_sink, _ = gate(
        StandaloneRules(RulesLedger(role=Role("car-park", "out")), log, "gw-00000000000000e2")
    )
    exit_core.on_credential(Credential("card", "1001"))
    exit_core.on_credential(Credential("card", "1001"))  # exits are never refused
    assert [d for d, _ in reasons(exit_sink)] == ["granted", "granted"]
    core.on_credential(Credential("card", "1001"))
    assert reasons(sink)[-1][0] == "granted"
    log.close()


class RecordingPanel:
    def __init__(self) -> None:
        self.cards: list[object] = []

    def report_card(self, credential: object) -> None:
        self.cards.append(credential)

    def link_status(self) -> object:
        return None


def test_reader_mode_reports_the_panel_number_and_never_pulses_the_relay() -> None:
    ledger = RulesLedger(numbers={ALICE: 4242})
    output = RecordingPanel()
    reporter = PanelReporter(output, ledger, credential_for(DoorSection(mode="osdp", card_format="H10301")))  # type: ignore[arg-type]
    core, sink, door = gate(panel=reporter)
    core.on_credential(Credential("card", "1001"))
    assert [d for d, _ in reasons(sink)] == ["granted"]
    assert not door.pulses  # the panel decides and drives the lock
    expected = credential_for(DoorSection(mode="osdp", card_format="H10301"))(4242)
    assert output.cards == [expected]
    # someone whose entry carries no panel number: the panel cannot be told, the gate denies
    ledger.numbers.clear()
    core.on_credential(Credential("card", "1001"))
    assert reasons(sink)[-1] == ("denied", "no_panel_number")
    assert len(output.cards) == 1


KEY = bytes(range(16))


def test_reader_mode_over_osdp_the_panel_receives_the_number_over_secure_channel() -> None:
    """The real OSDP reader door under the simulated panel (pty, Secure Channel): a card grant at the
    gate arrives at the panel as the card read of Alice's panel number, and the panel grants it."""
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    from edge.door.osdp import OsdpReaderDoor
    from edge.osdp.channel import SerialChannel
    from edge.osdp.panel import PtyBus, SimPanel, WireChannel
    from edge.osdp.pd import OsdpPeripheral

    with PtyBus() as bus:
        panel = SimPanel(WireChannel(bus.fd, 115200), address=2, scbk=KEY, granted={4242}).start()
        pd = OsdpPeripheral(SerialChannel.open(bus.path, 115200), address=2, scbk=KEY, outputs=1)
        door = OsdpReaderDoor(DoorController(SimLines(contact_wired=False, rte_wired=False)), pd)
        pd.start()
        try:
            assert pd.wait(secure=True, timeout_s=10).secure
            ledger = RulesLedger(numbers={ALICE: 4242})
            reporter = PanelReporter(door, ledger, credential_for(DoorSection(mode="osdp")))
            core, sink, _door = gate(panel=reporter)
            core.on_credential(Credential("card", "1001"))
            assert panel.wait_until(lambda: len(panel.decisions) >= 1, 5)
            assert panel.decisions[0] == (4242, True)
            assert reasons(sink)[0][0] == "granted"
        finally:
            door.close()
            panel.close()


def test_a_duress_finger_opens_like_any_other_and_alarms_only_the_site(tmp_path: Path) -> None:
    """Tried: Alice's ordinary finger (slot 3), then her duress finger (slot 9). Both grant and pulse
    the door the same way and give the same access event; the duress finger adds one critical
    ``duress`` alarm event, which is not an active alarm (the status LED does not blink)."""
    from edge.access.duress import DuressSlots
    from edge.fingerprint.api import Match
    from edge.ops.metrics import Metrics

    slots = DuressSlots(tmp_path / "duress.json")
    slots.mark(9, True)
    consent = MemoryConsent(consents={(ALICE, "fingerprint")})
    gallery = MemoryGallery()
    gallery.slots = {3: ALICE, 9: ALICE}
    sink = MemorySink()
    door = DoorController(SimLines())
    core = GateCore(
        gallery=gallery,
        consent=consent,
        policy=LanePolicy(PolicySection(), 0.6),
        door=door,
        sink=sink,
        settings=GateSettings(regrant_s=0.0),
        clock=FakeClock(),
        metrics=Metrics(),
        duress=DuressSlots(tmp_path / "duress.json"),  # read back from disk
    )
    core.on_finger(Match(3, 120))
    assert sink.of_kind("alarm") == []
    core.on_finger(Match(9, 120))
    grants = sink.of_kind("access")
    assert [g["decision"] for g in grants] == ["granted", "granted"]
    assert grants[0] == grants[1]  # the same event: nothing at the door tells them apart
    assert len(door.pulses) == 2
    assert [(a["code"], a["severity"]) for a in sink.of_kind("alarm")] == [("duress", "critical")]
    assert core.active_alarms == set()  # never shown on the terminal
    # a re-enrolment of slot 9 as an ordinary finger clears the flag
    slots.mark(9, False)
    assert 9 not in DuressSlots(tmp_path / "duress.json")
    assert (tmp_path / "duress.json").stat().st_mode & 0o777 == 0o600


def test_a_damaged_duress_file_is_a_clear_error(tmp_path: Path) -> None:
    from edge.access.duress import DuressSlots
    from edge.errors import StorageError

    (tmp_path / "duress.json").write_text("{not json")
    with pytest.raises(StorageError, match="unreadable"):
        DuressSlots(tmp_path / "duress.json")
