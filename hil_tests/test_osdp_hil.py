"""OSDP reader hardware-in-the-loop: the simulated panel on a pty by default, a real panel (or a
USB-RS485 adapter on one) with ``--osdp-port``.

    pytest hil_tests/test_osdp_hil.py                                          # simulated panel
    pytest -s hil_tests/test_osdp_hil.py --osdp-port /dev/ttyUSB0 --osdp-baud 9600 \\
        --osdp-address 0 --osdp-scbk-file panel-key.hex --osdp-card 4242 --osdp-format H10301

On hardware, set the panel's reader port to this address, speed and key (docs/door.md), and give a
card number the panel grants. The same checks run on both: the panel polls and the Secure Channel
comes up; a card read of that number reaches the panel, which answers with its LED (and, when it
grants, its output); the reader's LED program follows. Checks that need the panel's own view
(ID and capabilities as it recorded them, a wrong key) run on the simulator only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.door import DoorController, SimLines
from edge.door.osdp import OsdpReaderDoor
from edge.osdp.carddata import PanelCredential
from edge.osdp.channel import SerialChannel
from edge.osdp.commands import LedCommand, OutputCommand, PanelCommand
from edge.osdp.pd import OsdpError, OsdpPeripheral

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]
SIM_KEY = bytes.fromhex("8899aabbccddeeff0011223344556677")


@dataclass
class OsdpRig:
    door: OsdpReaderDoor
    lines: SimLines
    card: int
    fmt: str
    panel: object | None  # the SimPanel, or None on hardware
    commands: list[PanelCommand] = field(default_factory=list)

    @property
    def pd(self) -> OsdpPeripheral:
        return self.door.pd

    def needs_sim(self, what: str) -> object:
        if self.panel is None:
            pytest.skip(f"{what} needs the simulated panel")
        return self.panel


@pytest.fixture(scope="module")
def osdp_rig(request: pytest.FixtureRequest) -> Iterator[OsdpRig]:
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    from edge.osdp import scbk
    from edge.osdp.panel import PtyBus, SimPanel, WireChannel

    port = request.config.getoption("--osdp-port")
    baud = int(request.config.getoption("--osdp-baud"))
    address = int(request.config.getoption("--osdp-address"))
    card = int(request.config.getoption("--osdp-card"))
    fmt = str(request.config.getoption("--osdp-format"))
    lines = SimLines(contact_wired=False, rte_wired=False)
    commands: list[PanelCommand] = []
    if port:
        key_file = request.config.getoption("--osdp-scbk-file")
        if not key_file:
            pytest.fail("--osdp-port needs --osdp-scbk-file (the panel's key for this reader)")
        key = scbk.parse_hex(Path(key_file).read_text())
        pd = OsdpPeripheral(SerialChannel.open(port, baud), address=address, scbk=key, outputs=1)
        door = OsdpReaderDoor(DoorController(lines), pd)
        rig = OsdpRig(door, lines, card, fmt, None, commands)
        _record(rig)
        pd.start()
        try:
            yield rig
        finally:
            door.close()
        return
    with PtyBus() as bus:
        panel = SimPanel(WireChannel(bus.fd, baud), address=address, scbk=SIM_KEY, card_format=fmt, granted={card})  # type: ignore[arg-type]
        panel.start()
        pd = OsdpPeripheral(SerialChannel.open(bus.path, baud), address=address, scbk=SIM_KEY, outputs=1)
        door = OsdpReaderDoor(DoorController(lines), pd)
        rig = OsdpRig(door, lines, card, fmt, panel, commands)
        _record(rig)
        pd.start()
        try:
            yield rig
        finally:
            door.close()
            panel.close()


def _record(rig: OsdpRig) -> None:
    follow = rig.pd.on_command

    def both(command: PanelCommand) -> None:
        rig.commands.append(command)
        if follow is not None:
            follow(command)

    rig.pd.on_command = both


def wait_for(test: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not test():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_panel_polls_and_the_secure_channel_comes_up(osdp_rig: OsdpRig) -> None:
    state = osdp_rig.pd.wait(secure=True, timeout_s=30)
    assert state.online, "no poll from the panel: check A/B, baud and address (docs/door.md)"
    assert state.secure, "the panel polls but the Secure Channel does not come up: check the key"
    assert osdp_rig.door.link_status().ok


def test_the_panel_recorded_the_readers_id_and_capabilities(osdp_rig: OsdpRig) -> None:
    from edge.osdp.panel import SimPanel

    panel = osdp_rig.needs_sim("reading the panel's view of the reader")
    assert isinstance(panel, SimPanel)
    assert osdp_rig.pd.wait(secure=True, timeout_s=30).secure
    assert panel.pd_id() is not None
    sys_ = osdp_rig.pd._sys
    assert panel.capability(sys_.CAP_CARD_DATA_FORMAT)[0] == 1
    assert panel.capability(sys_.CAP_OUTPUT_CONTROL)[1] == 1


def test_a_granted_card_read_reaches_the_panel_which_answers_with_led_and_output(osdp_rig: OsdpRig) -> None:
    assert osdp_rig.pd.wait(secure=True, timeout_s=30).secure
    before = len(osdp_rig.commands)
    delivered = osdp_rig.pd.status().reads_delivered
    osdp_rig.pd.report_card(PanelCredential.from_number(osdp_rig.fmt, osdp_rig.card))  # type: ignore[arg-type]
    assert osdp_rig.pd.wait_delivered(delivered + 1, 5), "the panel did not collect the card read"
    assert wait_for(lambda: any(isinstance(c, LedCommand) for c in osdp_rig.commands[before:]), 10), (
        "the panel did not answer the card read with an LED command"
    )
    if osdp_rig.panel is not None:
        assert wait_for(lambda: any(isinstance(c, OutputCommand) for c in osdp_rig.commands[before:]), 5)
        now = time.monotonic()
        osdp_rig.door.service(now)
        assert osdp_rig.lines.energised  # the panel's output 0 drives the relay
        assert osdp_rig.lines.status_led
        osdp_rig.door.service(now + 10.0)
        assert not osdp_rig.lines.energised


def test_a_wrong_key_is_refused(osdp_rig: OsdpRig) -> None:
    osdp_rig.needs_sim("a panel with another key")
    from edge.osdp.panel import PtyBus, SimPanel, WireChannel

    with PtyBus() as bus:
        panel = SimPanel(WireChannel(bus.fd, 9600), address=0, scbk=bytes(16)).start()
        pd = OsdpPeripheral(SerialChannel.open(bus.path, 9600), address=0, scbk=SIM_KEY)
        pd.start()
        try:
            state = pd.wait(secure=True, timeout_s=4)
            assert not state.secure
            with pytest.raises(OsdpError):
                pd.report_card(PanelCredential.from_number("H10301", 1))
            assert panel.reads == []
        finally:
            pd.close()
            panel.close()
