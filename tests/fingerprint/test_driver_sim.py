"""The driver against edge-fpsim on a real pty: every command, settings, typed refusals."""

from __future__ import annotations

import pytest

from edge.fingerprint import protocol as p
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.errors import SensorProtocolError, SensorRefusedError, WrongPasswordError
from edge.fingerprint.sim.process import SimulatorProcess

pytestmark = pytest.mark.timeout(120)


def test_handshake_reads_the_r307_parameters(sim307: SimulatorProcess) -> None:
    with FingerprintDriver.open(sim307.port) as drv:
        params = drv.params
        assert params is not None
        assert (params.capacity, params.packet_size, params.baud, params.security_level) == (1000, 128, 57600, 3)
        assert params.status & 4  # password verified
        assert drv.check_module()


def test_library_commands_round_trip(sim307: SimulatorProcess) -> None:
    with FingerprintDriver.open(sim307.port) as drv:
        drv.empty()
        assert drv.template_count() == 0
        assert drv.capture()
        assert drv.image2tz(1) == 0
        assert drv.search(1) is None
        drv.store(5, 1)
        drv.store(300, 1)
        assert drv.template_count() == 2
        assert drv.occupied() == [5, 300]
        assert drv.first_free() == 0
        hit = drv.search(1)
        assert hit is not None
        assert hit[0] in (5, 300)
        assert hit[1] > 0
        assert drv.verify(300) is not None
        template = drv.read_template(1, expected=512)
        assert len(template) == 512
        drv.write_template(template, 2)
        assert drv.match()[0]
        drv.delete(5)
        assert drv.occupied() == [300]
        with pytest.raises(SensorRefusedError) as err:
            drv.load(5, 1)  # now empty
        assert err.value.code == p.Code.TEMPLATE_READ_ERROR
        with pytest.raises(SensorRefusedError) as err:
            drv.store(1000, 1)  # beyond capacity
        assert err.value.code == p.Code.BAD_PAGE
        assert "0x0B" in str(err.value)
        drv.empty()
        assert drv.template_count() == 0


@pytest.mark.parametrize("size", [32, 64, 256, 128])
def test_packet_size_changes_are_used_for_data_phases(sim307: SimulatorProcess, size: int) -> None:
    with FingerprintDriver.open(sim307.port) as drv:
        drv.set_packet_size(size)
        assert drv.packet_size == size
        assert drv.capture()
        assert drv.image2tz(1) == 0
        data = drv.read_template(1, expected=512)
        drv.write_template(data, 2)
        assert drv.read_template(2, expected=512) == data


def test_password_protects_the_module_until_verified(tmp_path) -> None:
    state = tmp_path / "module.json"
    with SimulatorProcess(model="r503", state=state) as sim, FingerprintDriver.open(sim.port) as drv:
        drv.set_password(0x1234)
        with pytest.raises(WrongPasswordError) as err:
            FingerprintDriver.open(sim.port)  # this session already verified: reopen sends password 0
        assert "password" in str(err.value)
        assert "1234" not in str(err.value)
        assert all("00001234" not in f for f in err.value.last_frames)
    with SimulatorProcess(model="r503", state=state) as sim, FingerprintDriver.open(sim.port, password=0x1234) as drv:
        assert drv.template_count() == 0
        drv.set_password(0)


def test_baud_change_applies_at_once_and_the_driver_follows(tmp_path) -> None:
    with SimulatorProcess(model="r503") as sim, FingerprintDriver.open(sim.port) as drv:
        assert drv.set_baud(115200) is True
        assert drv.read_system_parameters().baud == 115200
        assert sim.control.status()["host_baud"] == 115200


def test_baud_change_at_restart_keeps_the_old_rate_then_needs_the_new_one(tmp_path) -> None:
    state = tmp_path / "module.json"
    with (
        SimulatorProcess(model="r307", state=state, baud_applies="restart") as sim,
        FingerprintDriver.open(sim.port) as drv,
    ):
        assert drv.set_baud(19200) is False
        assert drv.baud == 57600
        assert drv.read_system_parameters().baud == 57600
    with (
        SimulatorProcess(model="r307", state=state, baud_applies="restart") as sim,
        FingerprintDriver.open(sim.port, baud=19200) as drv,
    ):
        assert drv.read_system_parameters().baud == 19200


def test_r503_led_and_r307_refuses_it(sim503: SimulatorProcess, sim307: SimulatorProcess) -> None:
    with FingerprintDriver.open(sim503.port) as drv:
        for name in ("ready", "scanning", "success", "failure"):
            drv.led_state(name)
        assert sim503.control.status()["led"] == [2, 40, 1, 3]
    with FingerprintDriver.open(sim307.port) as drv, pytest.raises(SensorRefusedError):
        drv.led_state("ready")


def test_spy_url_wraps_the_simulator_pty(sim503: SimulatorProcess, tmp_path) -> None:
    log = tmp_path / "spy.txt"
    with FingerprintDriver.open(f"spy://{sim503.port}?file={log}") as drv:
        assert drv.capacity == 200
    assert "ef 01" in log.read_text().lower() or "EF01" in log.read_text().replace(" ", "").upper()


def test_loop_url_echo_is_reported_as_a_protocol_error() -> None:
    # loop:// hands our own command frame back: the driver must say so, not hang or crash.
    with pytest.raises(SensorProtocolError) as err:
        FingerprintDriver.open("loop://", timeout_s=0.5)
    assert any(line.startswith("<-") for line in err.value.last_frames)


def test_the_panels_led_colours_show_on_the_r503_ring(sim503: SimulatorProcess) -> None:
    """Reader mode: an access panel's OSDP LED colours on the ring, over the real driver and pty.
    The AuraLedConfig bytes are (control, speed, colour, cycles): control 3 is steadily on."""
    with FingerprintDriver.open(sim503.port) as drv:
        drv.ring("green")
        assert sim503.control.status()["led"] == [3, 0, 4, 0]
        drv.ring("amber")  # shown as the ring's yellow
        assert sim503.control.status()["led"] == [3, 0, 5, 0]
        drv.ring("none")  # the panel switched its LED off
        assert sim503.control.status()["led"][0] == 4
        drv.ring(None)  # the panel gave the LED back: the ring's own "ready"
        assert sim503.control.status()["led"] == [1, 100, 2, 0]


def test_a_template_read_back_from_one_module_matches_the_finger_on_another() -> None:
    """Site sync's sensor half: the template stored in a slot of gate A's module, read back with
    LoadChar + UpChar (SensorWorkflows.template_of), written into gate B's module with DownChar +
    Store (SensorWorkflows.install), identifies the same finger on B. Both modules are fresh
    simulators: the module-scoped one keeps whatever packet size an earlier test set (the driver
    then read that test's data phase size as garbage, about one run in ten in random order)."""
    from edge.fingerprint.workflows import SensorWorkflows

    with (
        SimulatorProcess(model="r307", finger_always=True) as sim_a,
        FingerprintDriver.open(sim_a.port) as drv,
    ):
        drv.empty()
        assert drv.capture()
        assert drv.image2tz(1) == 0
        drv.store(7, 1)
        template = SensorWorkflows(drv).template_of(7, 512)
        assert len(template) == 512
    with SimulatorProcess(model="r307", finger_always=True) as other, FingerprintDriver.open(other.port) as drv_b:
        b = SensorWorkflows(drv_b)
        slot = b.install(template)
        assert drv_b.occupied() == [slot]
        assert drv_b.capture()
        assert drv_b.image2tz(1) == 0
        hit = drv_b.search(1)
        assert hit is not None
        assert hit[0] == slot
