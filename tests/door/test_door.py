"""The door logic over simulated lines (GPIO cannot run here), and the libgpiod backend's loud errors."""

from __future__ import annotations

import sys

import pytest

from edge.config.schema import GpioOffer
from edge.door import DoorController, SimLines, open_door
from edge.errors import HardwareError


def make(**kwargs: float) -> tuple[DoorController, SimLines]:
    lines = SimLines()
    return DoorController(lines, **kwargs), lines


def test_pulse_releases_the_lock_until_its_deadline_then_drops_it() -> None:
    door, lines = make()
    door.pulse(3.0, now=100.0)
    assert lines.energised
    door.service(102.9)
    assert lines.energised, "dropped the relay before the pulse ended"
    door.service(103.0)
    assert not lines.energised
    assert [state for _, state in lines.history] == [False, True, False]


def test_a_second_pulse_extends_the_open_one_without_toggling() -> None:
    door, lines = make()
    door.pulse(3.0, now=0.0)
    door.pulse(3.0, now=2.0)
    door.service(4.0)
    assert lines.energised
    door.service(5.0)
    assert not lines.energised
    assert [state for _, state in lines.history] == [False, True, False]


def test_zero_pulse_is_refused() -> None:
    door, lines = make()
    with pytest.raises(ValueError, match="more than 0"):
        door.pulse(0, now=0.0)
    assert not lines.energised


def test_request_to_exit_press_releases_the_door_once_per_press() -> None:
    door, lines = make(exit_pulse_s=5.0)
    lines.press_exit(True)
    events = door.service(10.0)
    assert [e.kind for e in events] == ["request_to_exit"]
    assert lines.energised
    assert door.service(11.0) == []  # still held: not a new press
    lines.press_exit(False)
    door.service(12.0)
    assert door.service(15.0) == []
    assert not lines.energised
    assert door.pulses == [(10.0, 5.0)]


def test_door_opened_without_release_is_forced_open() -> None:
    door, lines = make()
    door.service(0.0)
    lines.set_door_closed(False)
    kinds = [e.kind for e in door.service(1.0)]
    assert kinds == ["door_opened", "forced_open"]


def test_door_opened_during_or_just_after_a_pulse_is_not_forced() -> None:
    door, lines = make(open_grace_s=2.0)
    door.service(0.0)
    door.pulse(1.0, now=0.0)
    door.service(1.0)  # relay dropped at 1.0
    lines.set_door_closed(False)
    assert [e.kind for e in door.service(2.5)] == ["door_opened"]


def test_held_open_is_reported_once_and_cleared_by_closing() -> None:
    door, lines = make(held_open_s=30.0)
    door.service(0.0)
    door.pulse(3.0, now=0.0)
    lines.set_door_closed(False)
    door.service(0.5)
    assert door.service(20.0) == []
    assert [e.kind for e in door.service(31.0)] == ["held_open"]
    assert door.service(40.0) == []
    lines.set_door_closed(True)
    assert [e.kind for e in door.service(41.0)] == ["door_closed"]


def test_close_drops_the_relay_and_releases_the_lines() -> None:
    door, lines = make()
    door.pulse(10.0, now=0.0)
    door.close()
    assert not lines.energised
    assert lines.closed_lines
    assert not door.relay_energised


def test_unwired_inputs_never_raise_events() -> None:
    lines = SimLines(contact_wired=False, rte_wired=False)
    door = DoorController(lines)
    assert door.service(0.0) == []
    assert door.service(100.0) == []


def test_profile_with_simulated_gpio_gets_the_sim_backend() -> None:
    door = open_door(GpioOffer(chip="sim", simulated=True, door_relay=0), exit_pulse_s=2.0)
    assert isinstance(door.lines, SimLines)
    assert door.exit_pulse_s == 2.0
    door.close()


def test_real_gpiod_on_a_missing_chip_is_a_clear_hardware_error() -> None:
    with pytest.raises(HardwareError, match="does not exist") as info:
        open_door(GpioOffer(chip="/dev/gpiochip-not-here", door_relay=17, request_to_exit=27, door_contact=22))
    assert "gpio.chip" in info.value.hint


def test_configured_gpio_without_the_package_is_a_loud_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # makes `import gpiod` raise ImportError
    with pytest.raises(HardwareError, match="gpiod package is not installed") as info:
        open_door(GpioOffer(chip="/dev/gpiochip0", door_relay=17))
    assert "gate-edge[gpio]" in info.value.hint


def test_real_gpio_profile_without_a_relay_line_is_a_config_error() -> None:
    from edge.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        open_door(GpioOffer(chip="/dev/gpiochip0"))
    assert info.value.problems[0].key_path == "gpio.door_relay"
