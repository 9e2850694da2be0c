"""The non-biometric path: readers (simulated, FIFO, real pty, loop://) and authorisation by list."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.ledger import ConsentLedger
from edge.credentials.authorise import CredentialAuthoriser, enabled_kinds
from edge.credentials.readers import Credential, SerialCredentialReader, SimCredentialReader, open_card_reader
from edge.errors import HardwareError
from edge.state import StateDir

SITE = "site-c"
T0 = 1_800_000_000.0
PURPOSE = "access:main-gate"
CARD = "0004123456"
PIN = "73190542"
QR = "GATE-QR-7f3a9c21"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[ConsentLedger]:
    auth = Authority(tmp_path / "authority")
    auth.keygen(SITE)
    roster = tmp_path / "roster.json"
    roster.write_text(
        '{"entries": ['
        f'{{"subject": "p-001", "purposes": ["{PURPOSE}"], "modalities": ["face"], "status": "withdrawn",'
        f' "credentials": {{"card": "{CARD}", "qr": "{QR}"}}}},'
        f'{{"subject": "p-002", "purposes": ["access:gym"], "modalities": [], "pin": "{PIN}"}},'
        f'{{"subject": "p-003", "purposes": ["{PURPOSE}"], "modalities": ["face"]}}'
        "]}"
    )
    message, _ = auth.issue(auth.read_roster(roster, now=T0), now=T0, valid_for_s=3600)
    state = StateDir(tmp_path / "device")
    state.ensure()
    for pub in auth.root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    trust.install_credential_key(state, auth.credential_key())
    led = ConsentLedger.open(state, SITE, grace_period_s=60.0)
    led.apply(message, T0)
    yield led
    led.close()


def test_credentials_work_whatever_the_biometric_consent_and_when_stale(
    ledger: ConsentLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = CredentialAuthoriser(ledger, purpose=PURPOSE)
    stale = T0 + 3600 + 61
    assert ledger.is_stale(stale)
    for now in (T0, stale):
        # p-001 withdrew biometric consent: the card and QR still open the gate
        assert auth.authorise(Credential("card", CARD), now).subject == "p-001"
        assert auth.authorise(Credential("card", " 4123456 "), now).granted
        assert auth.authorise(Credential("qr", QR), now).granted
        # wrong value, wrong kind, wrong purpose
        assert auth.authorise(Credential("card", "0004123457"), now).reason == "unknown-credential"
        assert auth.authorise(Credential("pin", CARD[-8:]), now).reason == "unknown-credential"
        assert auth.authorise(Credential("pin", PIN), now).reason == "purpose-not-allowed"
    assert not ledger.allows("p-001", "face", PURPOSE, T0)
    card_only = CredentialAuthoriser(ledger, purpose=PURPOSE, kinds=enabled_kinds("serial", pin=False, qr=False))
    assert card_only.authorise(Credential("qr", QR), T0).reason == "kind-disabled"
    for secret in (CARD, "4123456", PIN, QR, "p-001", "p-002"):
        assert secret not in caplog.text
    assert CARD not in repr(Credential("card", CARD))


def test_sim_reader_feed_and_timeout() -> None:
    with SimCredentialReader() as reader:
        assert reader.read(0.05) is None
        reader.feed(Credential("pin", PIN))
        got = reader.read(1.0)
        assert got is not None
        assert (got.kind, got.value) == ("pin", PIN)


def test_sim_reader_control_fifo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fifo = tmp_path / "credentials"
    with SimCredentialReader(fifo) as reader:
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(writer, f"card:{CARD}\nbogus line\npin:12\nqr:{QR}\n".encode())
        finally:
            os.close(writer)
        first, second = reader.read(1.0), reader.read(1.0)
        assert first is not None
        assert second is not None
        assert [(first.kind, first.value), (second.kind, second.value)] == [("card", CARD), ("qr", QR)]
        assert reader.read(0.05) is None  # the writer closed; no end-of-file spin
    assert CARD not in caplog.text
    assert "ignored" in caplog.text


def test_serial_reader_over_a_real_pty() -> None:
    master, slave = os.openpty()
    try:
        reader = SerialCredentialReader(os.ttyname(slave), kind="card")
        try:
            os.write(master, b"\x02" + CARD.encode() + b"\x03\r\n")
            got = reader.read(2.0)
            assert got is not None
            assert got.value == CARD
            # a line split across writes, garbage, then a good line
            os.write(master, b"00041")
            assert reader.read(0.1) is None
            os.write(master, b"23456\r\nnot a card!\r\n99\n")
            values = [reader.read(1.0), reader.read(1.0)]
            assert [v.value for v in values if v] == ["0004123456", "99"]
        finally:
            reader.close()
    finally:
        os.close(master)
        os.close(slave)


def test_a_configured_serial_reader_opens_its_port_and_reads(tmp_path: Path) -> None:
    """``card = "serial"`` with ``port`` and ``baud`` from the config reaches the reader (it used to
    have no port setting at all, so a configured serial reader could never open)."""
    from edge.agent.assembly import credential_factory
    from edge.config.final import device_plan
    from edge.config.load import load_config

    master, slave = os.openpty()
    try:
        config_path = tmp_path / "edge.toml"
        config_path.write_text(
            '[device]\nsite = "s"\nprofile = "sim"\n[fingerprint]\nenabled = false\n[camera]\nenabled = false\n'
            f'[credentials]\ncard = "serial"\nport = "{os.ttyname(slave)}"\nbaud = 19200\n'
        )
        config, profile = load_config(config_path)
        factory = credential_factory(device_plan(config, profile).credentials, StateDir(tmp_path / "state"))
        assert factory is not None
        reader = factory()
        try:
            assert isinstance(reader, SerialCredentialReader)
            assert reader._port.baudrate == 19200
            os.write(master, CARD.encode() + b"\r\n")
            got = reader.read(2.0)
            assert got is not None
            assert (got.kind, got.value) == ("card", CARD)
        finally:
            reader.close()
    finally:
        os.close(master)
        os.close(slave)


def test_serial_reader_loop_url_and_bad_port() -> None:
    reader = SerialCredentialReader("loop://", kind="qr")
    try:
        reader._port.write(f"{QR}\n".encode())
        got = reader.read(1.0)
        assert got is not None
        assert got.kind == "qr"
    finally:
        reader.close()
    with pytest.raises(HardwareError, match="cannot open the card reader"):
        SerialCredentialReader("/dev/does-not-exist-42")
    with pytest.raises(HardwareError, match="not known"):
        open_card_reader("clock-and-data")
    with pytest.raises(HardwareError, match="no GPIO profile"):
        open_card_reader("wiegand")
    assert open_card_reader("none") is None
