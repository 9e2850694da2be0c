"""Opening the terminal's case (issue 15): a signed tamper event and critical alarm at once, an audit
record, and with ``[security] erase_on_tamper`` a crypto-erase of the gallery within a second, the
sensor library emptied by its own thread, and card/PIN/QR still opening the door.

The gallery is the real encrypted store in a temporary state directory; the case switch is the
simulated GPIO line (SimLines.open_case), debounced by the real TamperSwitch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edge.agent.decide import LanePolicy
from edge.agent.gate import GateCore, GateSettings
from edge.agent.runner import GateRunner
from edge.config.schema import PolicySection
from edge.door import DoorController, SimLines
from edge.door.modes import open_tamper
from edge.events.sink import MemorySink
from edge.gallery.store import Gallery
from edge.state import StateDir
from tests.agent.doubles import Credential, MemoryConsent, Switch, SwitchedSensor, unit

ALICE = "s-alice-01"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Reader:
    """A card reader that presents Alice's card whenever ``present`` is set."""

    def __init__(self) -> None:
        self.pending: list[Credential] = []

    def read(self, timeout_s: float) -> Credential | None:
        if self.pending:
            return self.pending.pop(0)
        time.sleep(min(timeout_s, 0.02))
        return None

    def close(self) -> None:
        pass


def erased(details: dict[str, object]) -> tuple[str, ...]:
    """What a ``tamper`` audit record says was erased."""
    found = details.get("erased", ())
    assert isinstance(found, list | tuple)
    return tuple(str(x) for x in found)


def test_opening_the_case_erases_the_gallery_within_a_second_and_cards_still_work(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.root.mkdir(mode=0o700)
    gallery = Gallery.open(state, create_key=True)
    gallery.enrol(ALICE, "face", templates=[unit(0)])
    assert len(gallery) == 1
    lines = SimLines()
    door = DoorController(lines)
    sink = MemorySink()
    audit: list[tuple[str, dict[str, object]]] = []
    consent = MemoryConsent(consents={(ALICE, "face")}, credentials={("card", "1001"): ALICE})
    core = GateCore(
        gallery=gallery,
        consent=consent,
        policy=LanePolicy(PolicySection(), 0.6),
        door=door,
        sink=sink,
        settings=GateSettings(regrant_s=0.0, deny_interval_s=0.0),
        audit=lambda kind, details: audit.append((kind, dict(details))),
    )
    reader = Reader()
    sensor_switch = Switch()
    sensors: list[SwitchedSensor] = []

    def open_sensor() -> SwitchedSensor:
        sensors.append(SwitchedSensor(sensor_switch, []))
        return sensors[-1]

    runner = GateRunner(
        core,
        fingerprint=open_sensor,
        credentials=lambda: reader,
        tamper=open_tamper(door),
        erase_on_tamper=lambda: gallery.crypto_erase(state),
        read_timeout_s=0.05,
    )
    with runner:
        time.sleep(0.2)
        assert state.gallery_key.exists()
        opened_at = time.monotonic()
        lines.open_case(True)
        assert wait_for(lambda: not state.gallery_key.exists(), 1.0), "the gallery key outlived the tamper by 1 s"
        erased_after = time.monotonic() - opened_at
        assert erased_after < 1.0
        assert wait_for(lambda: any(k == "tamper" and "sensor_library" in erased(d) for k, d in audit))
        # nothing matches any more: the templates are gone from memory and the key from disk
        assert len(gallery) == 0
        # the credential path keeps opening the door
        reader.pending.append(Credential("card", "1001"))
        assert wait_for(lambda: any(e["decision"] == "granted" for e in sink.of_kind("access")))
        lines.open_case(False)
        assert wait_for(lambda: [e["state"] for e in sink.of_kind("tamper")] == ["raised", "cleared"])
    gallery.close()
    assert sensors[-1].emptied == 1
    assert [(e["code"], e["state"], e["severity"]) for e in sink.of_kind("alarm")] == [
        ("tamper", "raised", "critical"),
        ("tamper", "cleared", "critical"),
    ]
    kinds = [(k, d.get("opened"), erased(d)) for k, d in audit]
    assert ("tamper", True, ("gallery_key",)) in kinds
    assert ("tamper", True, ("sensor_library",)) in kinds
    assert kinds[-1] == ("tamper", False, ())
    # the database file is left as ciphertext nobody can open: a restart finds no key
    assert state.gallery_db.exists()
    assert b"s-alice" not in state.gallery_db.read_bytes()


def test_without_erase_on_tamper_the_case_only_raises_the_alarm(tmp_path: Path) -> None:
    lines = SimLines()
    door = DoorController(lines)
    sink = MemorySink()
    core = GateCore(
        gallery=Gallery.open(StateDir(_mk(tmp_path)), create_key=True),
        consent=MemoryConsent(),
        policy=LanePolicy(PolicySection(), 0.6),
        door=door,
        sink=sink,
    )
    with GateRunner(core, tamper=open_tamper(door)):
        lines.open_case(True)
        assert wait_for(lambda: [e["state"] for e in sink.of_kind("tamper")] == ["raised"])
    assert (tmp_path / "s" / "gallery.key").exists()  # nothing erased without the site's say-so
    core.gallery.close()  # type: ignore[attr-defined]


def _mk(tmp_path: Path) -> Path:
    root = tmp_path / "s"
    root.mkdir(mode=0o700)
    return root


def test_the_panels_led_reaches_the_sensor_ring_on_the_fingerprint_thread(tmp_path: Path) -> None:
    """Reader mode: the panel's LED colour changes arrive on the OSDP thread; the fingerprint thread,
    which owns the sensor's port, shows the latest one (never two threads on one serial port)."""
    core = GateCore(
        gallery=Gallery.open(StateDir(_mk(tmp_path)), create_key=True),
        consent=MemoryConsent(),
        policy=LanePolicy(PolicySection(), 0.6),
        door=DoorController(SimLines()),
        sink=MemorySink(),
    )
    sensors: list[SwitchedSensor] = []
    switch = Switch()

    def open_sensor() -> SwitchedSensor:
        sensors.append(SwitchedSensor(switch, []))
        return sensors[-1]

    with GateRunner(core, fingerprint=open_sensor, read_timeout_s=0.05) as runner:
        assert wait_for(lambda: bool(sensors))
        runner.show_ring("green")
        assert wait_for(lambda: sensors[-1].rings == ["green"])
        runner.show_ring("red")
        runner.show_ring(None)  # two changes before the thread looked: only the latest is shown
        assert wait_for(lambda: sensors[-1].rings[-1] is None)
    core.gallery.close()  # type: ignore[attr-defined]
