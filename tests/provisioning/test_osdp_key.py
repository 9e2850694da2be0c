"""edge-provision osdp-key and the selftest's OSDP and tamper lines: the key is 0600, shown at most
once, never logged; a wrong key is a clear failure; plain mode is flagged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config.schema import DoorSection, Profile
from edge.door import SimLines
from edge.door.modes import open_configured_door
from edge.door.tamper import TamperSwitch
from edge.osdp import scbk
from edge.osdp.panel import PtyBus, SimPanel, WireChannel
from edge.state import StateDir
from provisioning import checks
from provisioning.cmd_reset import erase
from provisioning.files import read_settings, save_settings
from tests.provisioning.conftest import Run

KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def bus() -> Iterator[PtyBus]:
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    with PtyBus() as pty_bus:
        yield pty_bus


def sim_profile() -> Profile:
    return Profile.model_validate({"board": {"id": "sim", "name": "Sim"}, "gpio": {"chip": "sim", "simulated": True}})


def test_hex_from_stdin_is_stored_0600_and_only_its_id_is_shown(
    provision: Run, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert provision("init", "--site", "s").code == 0
    result = provision("osdp-key", "--hex-stdin", stdin=KEY.hex() + "\n")
    assert result.code == 0, result.err
    path = StateDir(state_dir).osdp_scbk
    assert path.read_bytes() == KEY
    assert path.stat().st_mode & 0o777 == 0o600
    assert scbk.key_id(KEY) in result.out
    everything = result.out + result.err + caplog.text
    assert KEY.hex() not in everything
    again = provision("osdp-key", "--hex-stdin", stdin=bytes(16).hex())
    assert again.code != 0
    assert "--force" in again.err + again.out
    assert path.read_bytes() == KEY  # nothing replaced
    bad = provision("osdp-key", "--force", "--hex-stdin", stdin="not-a-secret-but-not-hex")
    assert bad.code != 0
    assert "not-a-secret" not in bad.err + bad.out
    assert path.read_bytes() == KEY


def test_generate_shows_the_key_once_and_status_never(provision: Run, state_dir: Path) -> None:
    assert provision("init", "--site", "s").code == 0
    made = provision("osdp-key", "--generate", "--json").json()
    stored = StateDir(state_dir).osdp_scbk.read_bytes()
    assert made["key_hex_shown_once"] == stored.hex()
    status = provision("osdp-key")
    assert status.code == 0
    assert stored.hex() not in status.out
    assert scbk.key_id(stored) in status.out
    removed = provision("osdp-key", "--remove")
    assert removed.code == 0
    assert not StateDir(state_dir).osdp_scbk.exists()
    assert provision("osdp-key").code == 3


def test_install_mode_stores_the_key_the_panel_sends(provision: Run, state_dir: Path, bus: PtyBus) -> None:
    assert provision("init", "--site", "s").code == 0
    state = StateDir(state_dir)
    doc = read_settings(state)
    doc["door"] = {"mode": "osdp", "port": bus.path, "baud": 115200, "address": 3}
    save_settings(state, doc)
    # a panel whose reader setup holds KEY, in its install mode (plain first, SCBK-D, then KEYSET)
    panel = SimPanel(WireChannel(bus.fd, 115200), address=3, scbk=KEY, secure=False).start()
    try:
        result = provision("osdp-key", "--install-mode", "--timeout", "20")
    finally:
        panel.close()
    assert result.code == 0, result.err
    assert state.osdp_scbk.read_bytes() == KEY
    assert KEY.hex() not in result.out + result.err


def test_factory_reset_shreds_the_osdp_key(state_dir: Path) -> None:
    state = StateDir(state_dir)
    state.ensure()
    scbk.write(state.osdp_scbk, KEY)
    rows = dict(erase(state, None, skip_sensor=True))
    assert rows["osdp-scbk.key"] == "deleted"
    assert not state.osdp_scbk.exists()


def door_opener(bus: PtyBus, key_file: Path, *, secure: bool = True):
    section = DoorSection(mode="osdp", port=bus.path, baud=115200, address=6, secure=secure)
    return lambda: open_configured_door(section, sim_profile(), scbk_path=key_file)


def test_selftest_passes_with_the_panels_key_and_names_a_wrong_one(bus: PtyBus, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    key_file = tmp_path / "osdp-scbk.key"
    scbk.write(key_file, KEY)
    panel = SimPanel(WireChannel(bus.fd, 115200), address=6, scbk=KEY).start()
    try:
        result = checks.osdp_check(door_opener(bus, key_file), secure=True, key_path=key_file).run(state)
    finally:
        panel.close()
    assert result.status == "pass"
    assert f"Secure Channel up, key id {scbk.key_id(KEY)}" in result.detail
    panel = SimPanel(WireChannel(bus.fd, 115200), address=6, scbk=bytes(16)).start()
    try:
        result = checks.osdp_check(door_opener(bus, key_file), secure=True, key_path=key_file, wait_s=3).run(state)
    finally:
        panel.close()
    assert result.status == "fail"
    assert "refuses the Secure Channel" in result.detail
    assert "osdp-key" in result.fix
    assert KEY.hex() not in result.detail + result.fix


def test_selftest_says_when_no_panel_polls_and_flags_plain_mode(bus: PtyBus, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    key_file = tmp_path / "osdp-scbk.key"
    scbk.write(key_file, KEY)
    silent = checks.osdp_check(door_opener(bus, key_file), secure=True, key_path=key_file, wait_s=1.5).run(state)
    assert silent.status == "fail"
    assert "no poll from the panel at address 6" in silent.detail
    assert "A/B" in silent.fix
    panel = SimPanel(WireChannel(bus.fd, 115200), address=6, scbk=None, secure=False).start()
    try:
        plain = checks.osdp_check(
            door_opener(bus, tmp_path / "absent.key", secure=False), secure=False, key_path=tmp_path / "absent.key"
        ).run(state)
    finally:
        panel.close()
    assert plain.status == "warn"
    assert "PLAIN MODE" in plain.detail
    missing = checks.osdp_check(
        door_opener(bus, tmp_path / "absent.key"), secure=True, key_path=tmp_path / "absent.key"
    )
    result = missing.run(state)
    assert result.status == "fail"
    assert "osdp-key" in result.fix


def test_the_tamper_line_shows_the_case_state(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    lines = SimLines()
    closed: list[bool] = []

    def opener():
        return TamperSwitch(lines), lambda: closed.append(True)

    assert checks.tamper_check(opener).run(state).status == "pass"
    lines.open_case()
    result = checks.tamper_check(opener).run(state)
    assert (result.status, result.detail) == ("warn", "case OPEN")
    assert checks.tamper_check(lambda: (None, lambda: None)).run(state).status == "not wired"
    assert closed == [True, True]  # the lines are closed after each check


def test_edge_provision_selftest_fails_clearly_on_a_wrong_key_and_passes_on_the_right_one(
    provision: Run, state_dir: Path, bus: PtyBus
) -> None:
    assert provision("init", "--site", "s").code == 0
    state = StateDir(state_dir)
    doc = read_settings(state)
    doc["door"] = {"mode": "osdp", "port": bus.path, "baud": 115200, "address": 9}
    save_settings(state, doc)
    assert provision("osdp-key", "--hex-stdin", stdin=KEY.hex()).code == 0
    panel = SimPanel(WireChannel(bus.fd, 115200), address=9, scbk=bytes(range(16))).start()
    try:
        wrong = provision("selftest", "--only", "osdp", "--only", "tamper", "--json")
    finally:
        panel.close()
    assert wrong.code == 3
    found = {c["name"]: c for c in wrong.json()["checks"]}
    assert found["osdp"]["status"] == "fail"
    assert "refuses the Secure Channel" in found["osdp"]["detail"]
    assert found["tamper"]["status"] == "pass"
    assert found["tamper"]["detail"] == "case closed"
    panel = SimPanel(WireChannel(bus.fd, 115200), address=9, scbk=KEY).start()
    try:
        right = provision("selftest", "--only", "osdp", "--json")
    finally:
        panel.close()
    assert right.code == 0, right.out
    assert right.json()["checks"][0]["status"] == "pass"
