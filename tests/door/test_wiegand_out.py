"""Wiegand output: frames on the gpiod stand-in, decoded back by the reader's own assembler, with
the pulse schedule checked on a virtual clock (no wall-clock assertions)."""

from __future__ import annotations

import itertools

import pytest

from edge.credentials.wiegand import CardRead, FrameAssembler, WiegandError, decode
from edge.door import DoorController, SimLines
from edge.door.wiegand_out import (
    INTERVAL_NS,
    PULSE_NS,
    GpiodWiegandLines,
    SimWiegandLines,
    WiegandEmitter,
    WiegandOutDoor,
)
from edge.errors import HardwareError
from edge.osdp.carddata import PanelCredential
from tests import gpiod_standin


class VirtualClock:
    def __init__(self) -> None:
        self.t = 1_000_000_000

    def now_ns(self) -> int:
        return self.t

    def sleep_until(self, t_ns: int) -> None:
        self.t = max(self.t, t_ns)


def capture(monkeypatch: pytest.MonkeyPatch, *, inverted: bool = False):
    request = gpiod_standin.Request([20, 21], [], {})
    line_mod, made = gpiod_standin.install(monkeypatch, request)
    clock = VirtualClock()
    request.clock = clock.now_ns
    lines = GpiodWiegandLines("/dev/gpiochip0", 20, 21, inverted=inverted)
    return request, line_mod, made, clock, lines


def pulses(writes: list[tuple[object, object, int]], active: object) -> list[tuple[int, int, int]]:
    """(line 0/1, start ns, width ns) of each pulse in a capture of set_value calls."""
    started: dict[object, int] = {}
    out = []
    for line, value, t in writes:
        if value == active:
            started[line] = t
        elif line in started:
            out.append((0 if line == 20 else 1, started.pop(line), t))
    return [(ln, s, end - s) for ln, s, end in out]


def number_of(frame: list[int] | WiegandError) -> int:
    """The card number a frame from the assembler carries (a broken frame fails the test)."""
    assert isinstance(frame, list)
    read = decode(frame, ("H10301",))
    assert isinstance(read, CardRead)
    return read.number


@pytest.mark.parametrize(
    ("fmt", "card", "facility"), [("H10301", 12345, 17), ("W34", 54321, 300), ("H10304", 400000, 9)]
)
def test_frames_decode_back_with_the_readers_assembler_and_keep_wiegand_timing(
    monkeypatch: pytest.MonkeyPatch, fmt: str, card: int, facility: int
) -> None:
    request, line_mod, _, clock, lines = capture(monkeypatch)
    emitter = WiegandEmitter(lines, clock=clock)
    cred = PanelCredential.from_card(fmt, card, facility)  # type: ignore[arg-type]
    emitter.emit(cred.bits)
    emitter.emit(cred.bits)  # a second frame, which must wait for the frame gap
    seen = pulses(request.writes, line_mod.Value.ACTIVE)
    assert len(seen) == 2 * len(cred.bits)
    assert {width for _, _, width in seen} == {PULSE_NS}  # 50 us low, every bit
    starts = [s for _, s, _ in seen]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    n = len(cred.bits)
    assert set(gaps[: n - 1] + gaps[n:]) == {INTERVAL_NS}  # 2 ms apart inside a frame
    assert gaps[n - 1] >= 25_000_000  # the reader side closes a frame after 25 ms of quiet
    assembler = FrameAssembler()
    frames = []
    for line, start, _ in seen:
        frames += assembler.push(line, start)
    frames += assembler.poll(starts[-1] + 100_000_000)
    assert frames == [list(cred.bits), list(cred.bits)]
    first = frames[0]
    assert isinstance(first, list)
    read = decode(first, (fmt,))
    assert isinstance(read, CardRead)
    assert (read.card, read.facility) == (card, facility)


@pytest.mark.parametrize("inverted", [False, True])
def test_lines_start_idle_and_active_means_a_pulse_whatever_the_stage(
    monkeypatch: pytest.MonkeyPatch, inverted: bool
) -> None:
    request, line_mod, made, _, lines = capture(monkeypatch, inverted=inverted)
    for line in (20, 21):
        settings = made["config"][line]
        assert settings["output_value"] == line_mod.Value.INACTIVE
        assert settings["active_low"] is (not inverted)  # level shifter: pulse = low; NPN: pulse = GPIO high
    lines.close()
    assert request.released
    assert all(value == line_mod.Value.INACTIVE for _, value, _ in request.writes)


def test_timing_outside_the_wiegand_range_is_refused() -> None:
    with pytest.raises(HardwareError):
        WiegandEmitter(SimWiegandLines(), pulse_ns=5_000)
    with pytest.raises(HardwareError):
        WiegandEmitter(SimWiegandLines(), interval_ns=50_000)


def test_the_door_sends_queued_reads_from_its_own_thread_in_order() -> None:
    clock = VirtualClock()
    out = SimWiegandLines(clock)
    door = WiegandOutDoor(DoorController(SimLines()), WiegandEmitter(out, clock=clock))
    try:
        for number in (1, 2, 3):
            door.report_card(PanelCredential.from_number("H10301", number))
        assert door.flush(5.0)
        assert door.sent == 3
        assert door.link_status().ok
        assembler = FrameAssembler()
        frames = []
        for line, active, t in out.edges:
            if active:
                frames += assembler.push(line, t)
        frames += assembler.poll(clock.t + 100_000_000)
        numbers = [number_of(f) for f in frames]
        assert numbers == [1, 2, 3]
    finally:
        door.close()
    assert out.closed
