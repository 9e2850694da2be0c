"""The case switch: debounced, read through the door's lines (SimLines, libgpiod), polled or waited on."""

from __future__ import annotations

import pytest

from edge.door import SimLines
from edge.door.tamper import TamperEvent, TamperSwitch
from tests import gpiod_standin


class VirtualTime:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_opening_the_case_is_one_event_after_the_debounce_and_closing_another() -> None:
    lines = SimLines()
    switch = TamperSwitch(lines, debounce_s=0.05)
    assert switch.poll(0.0) is None  # closed at start: nothing to report
    assert switch.poll(0.1) is None
    assert switch.state is False
    lines.open_case()
    assert switch.poll(1.00) is None
    assert switch.poll(1.04) is None  # not yet settled
    assert switch.poll(1.05) == TamperEvent(opened=True, at=1.05)
    assert switch.poll(1.2) is None  # one event per change
    lines.open_case(False)
    assert switch.poll(2.0) is None
    assert switch.poll(2.06) == TamperEvent(opened=False, at=2.06)


def test_a_bounce_shorter_than_the_debounce_is_no_event() -> None:
    lines = SimLines()
    switch = TamperSwitch(lines, debounce_s=0.05)
    switch.poll(0.0)
    switch.poll(0.1)
    lines.open_case()
    assert switch.poll(0.12) is None
    lines.open_case(False)
    assert switch.poll(0.14) is None
    assert switch.poll(0.30) is None
    assert switch.state is False


def test_a_case_open_at_start_is_reported() -> None:
    lines = SimLines()
    lines.open_case()
    switch = TamperSwitch(lines, debounce_s=0.05)
    assert switch.poll(0.0) is None
    assert switch.poll(0.05) == TamperEvent(opened=True, at=0.05)


def test_wait_returns_the_event_within_its_timeout_or_none() -> None:
    lines = SimLines()
    clock = VirtualTime()
    switch = TamperSwitch(lines, debounce_s=0.05, poll_s=0.02, clock=clock.now, sleep=clock.sleep)
    assert switch.wait(0.5) is None
    assert clock.t == pytest.approx(0.5, abs=1e-9)
    lines.open_case()
    event = switch.wait(1.0)
    assert event is not None
    assert event.opened
    assert event.at - 0.5 <= 0.05 + 0.02 + 1e-9  # within one poll of the debounce


def test_no_switch_wired_is_said_plainly() -> None:
    switch = TamperSwitch(SimLines(tamper_wired=False))
    assert not switch.wired
    assert switch.poll(0.0) is None
    assert switch.state is None
    assert "no tamper switch" in switch.describe()


@pytest.mark.parametrize(("open_level", "active_low"), [("high", False), ("low", True)])
def test_gpiod_lines_read_the_tamper_line_with_the_profiles_polarity(
    monkeypatch: pytest.MonkeyPatch, open_level: str, active_low: bool
) -> None:
    request = gpiod_standin.Request([17, 4], [], {})
    line_mod, made = gpiod_standin.install(monkeypatch, request)
    from edge.door.gpiod_lines import GpiodLines

    lines = GpiodLines("/dev/gpiochip0", relay=17, tamper=4, tamper_open_high=open_level == "high")
    assert made["config"][4]["active_low"] is active_low  # active always means "open"
    request.values[4] = line_mod.Value.ACTIVE
    assert lines.tamper_open() is True
    request.values[4] = line_mod.Value.INACTIVE
    assert lines.tamper_open() is False
    switch = TamperSwitch(lines)
    assert switch.describe() == "case closed"
    lines.close()
    assert request.released
