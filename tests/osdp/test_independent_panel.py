"""The reader under the independent control panel (osdp 1.6, pure Python; shares no code with
libosdp), over a real pty: poll, ID, capabilities, Secure Channel, card reads; a wrong key is
refused. Skips with a reason where scripts/setup.sh has not installed the peer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.errors import HardwareError
from edge.osdp.carddata import PanelCredential, read_back
from edge.osdp.channel import SerialChannel
from edge.osdp.panel import PtyBus
from edge.osdp.pd import OsdpError, OsdpPeripheral, PdIdentity
from tests.osdp.conftest import KEY, OTHER_KEY

pytestmark = pytest.mark.timeout(90)


def peer_or_skip() -> None:
    from edge.testing import osdp_peer

    try:
        osdp_peer.load()
    except HardwareError as exc:
        pytest.skip(f"independent OSDP panel not installed: {exc.one_line()}")


def reader(bus: PtyBus, key: bytes) -> OsdpPeripheral:
    pd = OsdpPeripheral(
        SerialChannel.open(bus.path, 9600),
        address=1,
        scbk=key,
        outputs=1,
        identity=PdIdentity(vendor_code=0x0A0B0C, model=2, version=1, serial_number=0x01020304, firmware=0x000900),
    )
    pd.start()
    return pd


@pytest.fixture
def pair(bus: PtyBus) -> Iterator[tuple[OsdpPeripheral, object]]:
    peer_or_skip()
    from edge.testing.osdp_peer import IndependentPanel

    pd = reader(bus, KEY)
    panel = IndependentPanel(bus.fd, address=1, scbk=KEY)
    yield pd, panel
    panel.close()
    pd.close()


def test_poll_id_capabilities_and_the_secure_channel_with_an_independent_panel(
    pair: tuple[OsdpPeripheral, object],
) -> None:
    from edge.testing.osdp_peer import IndependentPanel

    pd, panel = pair
    assert isinstance(panel, IndependentPanel)
    assert panel.wait_until(panel.secure, 15), "the Secure Channel handshake did not complete"
    assert pd.wait(secure=True, timeout_s=5).secure
    ident = panel.id_report()
    assert (ident.vendor_code, ident.model_number, ident.version) == (bytes([0x0C, 0x0B, 0x0A]), 2, 1)
    caps = panel.capabilities()
    assert caps["CardDataFormat"][0] == 1
    assert caps["ReaderLEDControl"] == (4, 1)
    assert caps["OutputControl"] == (4, 1)
    assert caps["CommunicationSecurity"][0] & 1  # AES-128 Secure Channel offered
    assert "Biometrics" not in caps
    assert panel.led_green()
    assert panel.handshake_failures == 0


@pytest.mark.parametrize("fmt", ["H10301", "W34", "H10304", "raw"])
def test_the_independent_panel_receives_the_card_reads(pair: tuple[OsdpPeripheral, object], fmt: str) -> None:
    from edge.testing.osdp_peer import IndependentPanel

    pd, panel = pair
    assert isinstance(panel, IndependentPanel)
    assert panel.wait_until(panel.secure, 15)
    assert pd.wait(secure=True, timeout_s=5).secure
    numbers = [1, 4242, 65535]
    for n in numbers:
        pd.report_card(PanelCredential.raw(n, 32) if fmt == "raw" else PanelCredential.from_number(fmt, n))  # type: ignore[arg-type]
        assert panel.wait_reads(len(panel.reads) + 1, 5)
    got = [read_back(fmt, data, bits).number() for bits, data, _ in panel.reads]  # type: ignore[arg-type]
    assert got == numbers
    assert {code for _, _, code in panel.reads} == {0 if fmt == "raw" else 1}


def test_a_wrong_key_is_a_refused_session_and_no_card_read_leaves(bus: PtyBus) -> None:
    peer_or_skip()
    from edge.testing.osdp_peer import IndependentPanel

    pd = reader(bus, KEY)
    panel = IndependentPanel(bus.fd, address=1, scbk=OTHER_KEY)
    try:
        assert panel.wait_until(lambda: panel.handshake_failures >= 2, 20), "the panel never tried the handshake"
        assert not panel.secure()
        state = pd.status()
        assert state.online
        assert not state.secure
        with pytest.raises(OsdpError, match="Secure Channel to the panel is down"):
            pd.report_card(PanelCredential.from_number("H10301", 4242))
        assert panel.reads == []
    finally:
        panel.close()
        pd.close()
