"""One suite for the simulator and a real module (see conftest.py for the options)."""

from __future__ import annotations

import time

import pytest

from edge.fingerprint import api
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.errors import SensorTimeoutError
from edge.fingerprint.workflows import SensorWorkflows

from .conftest import Rig

pytestmark = [pytest.mark.hil, pytest.mark.timeout(280)]


def test_module_answers_with_its_model_parameters(rig: Rig) -> None:
    params = rig.driver.handshake()
    assert params.capacity == rig.spec["capacity"]
    assert params.packet_size in (32, 64, 128, 256)
    assert params.baud == rig.driver.baud
    assert 1 <= params.security_level <= 5


def test_no_finger_capture_returns_within_the_deadline(rig: Rig) -> None:
    rig.presenter.lift()
    start = time.monotonic()
    assert rig.driver.wait_for_finger(0.5) is False
    assert time.monotonic() - start < 3.0


def test_enrol_identify_and_delete(rig: Rig) -> None:
    sensor = SensorWorkflows(rig.driver, led=bool(rig.spec["led"]), lift_timeout_s=5.0)
    sensor.empty()
    impressions = iter([1, 2, 3, 4])

    def prompt(text: str) -> None:
        if text in (api.PROMPT_PLACE, api.PROMPT_AGAIN):
            rig.presenter.place("A", next(impressions))
        else:
            rig.presenter.lift()

    outcome = sensor.enrol(prompt, captures=2, timeout_s=60)
    assert outcome.slot is not None
    rig.presenter.place("A", 3)
    hit = sensor.identify(timeout_s=30)
    assert isinstance(hit, api.Match)
    assert hit.slot == outcome.slot
    rig.presenter.lift()
    rig.presenter.place("C", 1)
    assert sensor.identify(timeout_s=30) == api.NO_MATCH
    rig.presenter.lift()
    sensor.delete(outcome.slot)
    assert sensor.template_count() == 0


def test_template_round_trip_at_every_packet_size(rig: Rig) -> None:
    drv = rig.driver
    rig.presenter.place("B", 1)
    assert drv.capture()
    assert drv.image2tz(1) == 0
    rig.presenter.lift()
    try:
        for size in (32, 64, 256, 128):
            drv.set_packet_size(size)
            data = drv.read_template(1, expected=int(rig.spec["template"]))  # type: ignore[call-overload]
            drv.write_template(data, 2)
            assert drv.read_template(2, expected=len(data)) == data
    finally:
        drv.set_packet_size(128)


def test_led_states(rig: Rig) -> None:
    if not rig.spec["led"]:
        pytest.skip(f"{rig.model} has no LED ring")
    for name in ("ready", "scanning", "success", "failure", "off"):
        rig.driver.led_state(name)


def test_reopen_recovers_the_session(rig: Rig) -> None:
    rig.driver.reopen()
    assert rig.driver.template_count() >= 0


def test_silence_times_out_and_the_driver_recovers(rig: Rig) -> None:
    sim = rig.needs_sim("a silent module")
    sim.control.fault("silent")
    try:
        with pytest.raises(SensorTimeoutError):
            rig.driver.template_count()
    finally:
        sim.control.clear_faults()
    assert rig.driver.template_count() >= 0


def test_second_client_on_the_same_port_works_after_the_first_closes(rig: Rig) -> None:
    if rig.sim is None:
        pytest.skip("a real port may be held exclusively by the rig's driver")
    with FingerprintDriver.open(rig.sim.port) as other:
        assert other.capacity == rig.spec["capacity"]
