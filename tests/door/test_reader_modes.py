"""The door in OSDP reader mode under the simulated panel (a real pty), and the mode factory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config.schema import DoorSection, Profile
from edge.door import DoorController, SimLines
from edge.door.modes import credential_for, open_configured_door, open_tamper
from edge.door.osdp import OsdpReaderDoor
from edge.door.wiegand_out import SimWiegandLines, WiegandOutDoor
from edge.errors import StorageError
from edge.osdp import scbk
from edge.osdp.channel import SerialChannel
from edge.osdp.commands import BuzzerCommand
from edge.osdp.panel import PtyBus, SimPanel, WireChannel
from edge.osdp.pd import OsdpPeripheral

KEY = bytes(range(16))
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bus():
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    with PtyBus() as pty_bus:
        yield pty_bus


def sim_profile(**gpio: object) -> Profile:
    return Profile.model_validate(
        {"board": {"id": "sim", "name": "Sim"}, "gpio": {"chip": "sim", "simulated": True} | gpio}
    )


def test_a_grant_from_the_panel_drives_the_relay_led_ring_and_buzzer(bus: PtyBus) -> None:
    panel = SimPanel(WireChannel(bus.fd, 115200), address=2, scbk=KEY, granted={777}, grant_pulse_s=3.0).start()
    lines = SimLines(contact_wired=False, rte_wired=False)
    pd = OsdpPeripheral(SerialChannel.open(bus.path, 115200), address=2, scbk=KEY, outputs=1)
    ring: list[object] = []
    beeps: list[BuzzerCommand] = []
    door = OsdpReaderDoor(DoorController(lines), pd, on_led=ring.append, on_buzzer=beeps.append)
    pd.start()
    try:
        assert pd.wait(secure=True, timeout_s=10).secure
        assert door.link_status().ok
        door.report_card(credential_for(DoorSection(mode="osdp", card_format="H10301"))(777))
        assert panel.wait_until(lambda: len(door._inbox) >= 2, 5)  # LED and output, applied by service
        now = time.monotonic()
        door.service(now)
        assert lines.energised  # the panel's output 0: a 3 s pulse
        assert lines.status_led  # the panel's green
        assert ring == ["green"]
        assert panel.wait_until(lambda: len(beeps) == 1, 5)
        assert beeps[0].repeat == 1
        door.service(now + 2.5)  # the LED's 2 s temporary green is over: back to the terminal's own
        assert door.door.led_override is None
        assert ring == ["green", None]
        door.service(now + 3.2)
        assert not lines.energised
    finally:
        door.close()
        panel.close()
    assert lines.closed_lines


def test_a_refusal_lights_red_and_leaves_the_relay_alone(bus: PtyBus) -> None:
    panel = SimPanel(WireChannel(bus.fd, 115200), address=2, scbk=KEY, granted=set()).start()
    lines = SimLines(contact_wired=False, rte_wired=False)
    pd = OsdpPeripheral(SerialChannel.open(bus.path, 115200), address=2, scbk=KEY, outputs=1)
    ring: list[object] = []
    door = OsdpReaderDoor(DoorController(lines), pd, on_led=ring.append)
    pd.start()
    try:
        assert pd.wait(secure=True, timeout_s=10).secure
        door.report_card(credential_for(DoorSection(mode="osdp"))(5))
        assert panel.wait_until(lambda: len(door._inbox) >= 1, 5)
        door.service(time.monotonic())
        assert ring == ["red"]
        assert not lines.energised
    finally:
        door.close()
        panel.close()


def test_osdp_mode_opens_from_the_settings_with_the_installed_key(bus: PtyBus, tmp_path: Path) -> None:
    key_file = tmp_path / "osdp-scbk.key"
    section = DoorSection(mode="osdp", port=bus.path, baud=115200, address=4)
    with pytest.raises(StorageError, match="no OSDP Secure Channel key") as info:
        open_configured_door(section, sim_profile(), scbk_path=key_file)
    assert "osdp-key" in info.value.hint
    scbk.write(key_file, KEY)
    panel = SimPanel(WireChannel(bus.fd, 115200), address=4, scbk=KEY, granted={1}).start()
    door = open_configured_door(section, sim_profile(), scbk_path=key_file)
    try:
        assert isinstance(door, OsdpReaderDoor)
        assert door.pd.wait(secure=True, timeout_s=10).secure
        tamper = open_tamper(door)  # the simulated lines have a case switch, as in relay mode
        assert tamper is not None
        assert isinstance(door.door.lines, SimLines)
        door.door.lines.open_case()
        assert tamper.wait(1.0) is not None
    finally:
        door.close()
        panel.close()


def test_relay_and_wiegand_out_modes_open_from_the_settings(tmp_path: Path) -> None:
    relay = open_configured_door(DoorSection(), sim_profile(door_relay=0), scbk_path=tmp_path / "k")
    assert isinstance(relay, DoorController)
    tamper = open_tamper(relay)
    assert tamper is not None
    assert tamper.describe() == "case closed"
    relay.close()
    out = open_configured_door(DoorSection(mode="wiegand-out"), sim_profile(), scbk_path=tmp_path / "k")
    assert isinstance(out, WiegandOutDoor)
    assert isinstance(out.emitter.lines, SimWiegandLines)
    out.report_card(credential_for(DoorSection(card_format="raw", card_bits=32))(0xDEADBEEF))
    assert out.flush(5.0)
    assert [active for _, active, _ in out.emitter.lines.edges].count(True) == 32
    out.close()


def test_plain_mode_without_a_key_starts_in_install_mode(bus: PtyBus, tmp_path: Path) -> None:
    section = DoorSection(mode="osdp", port=bus.path, secure=False)
    door = open_configured_door(section, sim_profile(), scbk_path=tmp_path / "none.key", start=False)
    try:
        assert isinstance(door, OsdpReaderDoor)
        assert door.pd.status().install_mode
    finally:
        door.close()


def test_a_keyset_from_the_panel_replaces_the_key_file_and_is_audited(bus: PtyBus, tmp_path: Path) -> None:
    """The panel changes the reader's Secure Channel key (KEYSET over the secure channel): the new key
    replaces the installed file (0600) and an ``osdp_key`` audit record names it by its id only."""
    key_file = tmp_path / "osdp-scbk.key"
    scbk.write(key_file, KEY)
    audit: list[tuple[str, dict[str, object]]] = []
    panel = SimPanel(WireChannel(bus.fd, 115200), address=4, scbk=KEY, granted={1}).start()
    section = DoorSection(mode="osdp", port=bus.path, baud=115200, address=4)
    door = open_configured_door(
        section, sim_profile(), scbk_path=key_file, audit=lambda kind, details: audit.append((kind, details))
    )
    new_key = bytes(range(50, 66))
    try:
        assert isinstance(door, OsdpReaderDoor)
        assert door.pd.wait(secure=True, timeout_s=10).secure
        panel.send(panel.keyset_command(new_key))
        assert panel.wait_until(lambda: bool(audit), 5)
    finally:
        door.close()
        panel.close()
    assert scbk.read(key_file) == new_key
    assert audit == [("osdp_key", {"how": "panel_keyset", "key_id": scbk.key_id(new_key)})]
    assert new_key.hex() not in repr(audit)
