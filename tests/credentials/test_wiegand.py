"""Wiegand card readers and keypads: the codec, the frame assembler, and the reader over pulses.

What is tried: every format's round trip (hypothesis), every single-bit flip of a card frame,
frames of unknown length, keypad frames with a bad complement, noise on both lines, contact
bounce, a dropped bit, lost kernel events, a pause inside a PIN, and the whole reader over the
simulated D0/D1 lines (real codec and assembler, timed pulses, the control FIFO the demo uses).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.schema import GpioOffer
from edge.credentials import wiegand
from edge.credentials.readers import open_card_reader
from edge.credentials.wiegand import FORMATS, CardRead, FrameAssembler, KeyPress, WiegandError, decode, encode
from edge.credentials.wiegand_reader import LOST, Pulse, SimWiegandSource, WiegandReader
from edge.errors import HardwareError


def _fields(name: str) -> st.SearchStrategy[tuple[str, int | None, int]]:
    fmt = FORMATS[name]
    facility = st.integers(0, (1 << fmt.facility[1]) - 1) if fmt.facility else st.none()
    return st.tuples(st.just(name), facility, st.integers(0, (1 << fmt.card[1]) - 1))


@given(st.one_of(*(_fields(name) for name in FORMATS)))
def test_every_format_round_trips(case: tuple[str, int | None, int]) -> None:
    name, facility, card = case
    bits = encode(name, card=card, facility=facility)
    assert len(bits) == FORMATS[name].bits
    # H10304 and H10302 share a length and parity spans: decode takes the first listed
    read = decode(bits, [name])
    assert isinstance(read, CardRead)
    assert (read.format, read.facility, read.card) == (name, facility, card)


def test_h10301_known_frame_and_value_styles() -> None:
    # facility 18, card 12345, by hand: the first 12 data bits 00010010 0011 hold four 1s (even
    # parity bit 0), the last 12, 000000111001, four (odd parity bit 1)
    bits = encode("H10301", facility=18, card=12345)
    assert "".join(map(str, bits)) == "0" + "00010010" + "0011000000111001" + "1"
    read = decode(bits)
    assert isinstance(read, CardRead)
    assert read.value("number") == str((18 << 16) | 12345) == "1191993"
    assert read.value("facility-card") == "01812345"  # 3 + 5 digits: unambiguous
    assert read.value("card") == "12345"
    assert "12345" not in repr(read)  # card numbers stay out of logs


@pytest.mark.parametrize("name", list(FORMATS))
def test_any_single_bit_flip_is_rejected(name: str) -> None:
    bits = encode(name, card=(1 << FORMATS[name].card[1]) - 12345, facility=7 if FORMATS[name].facility else None)
    for i in range(len(bits)):
        flipped = list(bits)
        flipped[i] ^= 1
        with pytest.raises(WiegandError, match="parity"):
            decode(flipped, [name])


def test_unknown_lengths_and_bad_bits_say_what_was_accepted() -> None:
    with pytest.raises(WiegandError, match=r"27-bit .* \(accepted: H10301 \(26 bits\), W34 \(34 bits\)"):
        decode([0] * 27)
    with pytest.raises(WiegandError, match="only 0 and 1"):
        decode([0, 2] * 13)


def test_keypad_frames_4_and_8_bit() -> None:
    for key in range(12):
        assert decode(wiegand.encode_key(key)) == KeyPress(key)
        assert decode(wiegand.encode_key(key, width=8)) == KeyPress(key)
    assert wiegand.encode_key(1, width=8) == [1, 1, 1, 0, 0, 0, 0, 1]
    with pytest.raises(WiegandError, match="complement"):
        decode([0, 0, 0, 0, 0, 0, 0, 1])
    with pytest.raises(WiegandError, match="no key"):
        decode([1, 1, 1, 1])


def _pulses(bits: list[int], start: int = 0, step: int = 2_000_000) -> list[tuple[int, int]]:
    return [(b, start + i * step) for i, b in enumerate(bits)]


def test_assembler_splits_frames_on_the_end_gap() -> None:
    a = FrameAssembler()
    one, two = encode("H10301", facility=1, card=2), encode("W34", facility=3, card=4)
    out: list[object] = []
    for line, t in _pulses(one) + _pulses(two, start=100_000_000):
        out += a.push(line, t)
    assert out == [one]  # the second frame is still open
    assert a.poll(100_000_000 + 33 * 2_000_000 + wiegand.END_GAP_NS - 1) == []
    assert a.poll(100_000_000 + 33 * 2_000_000 + wiegand.END_GAP_NS) == [two]
    assert a.deadline_ns() is None


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("noise", "closer than a bit interval"),  # D0 and D1 pulse together
        ("bounce", "closer than a bit interval"),  # a pulse repeats 20 us later
        ("lost", "edge events were lost"),
    ],
)
def test_assembler_spoils_faulty_frames_and_recovers(fault: str, why: str) -> None:
    a = FrameAssembler()
    bits = encode("H10301", facility=200, card=65000)
    pulses = _pulses(bits)
    for i, (line, t) in enumerate(pulses):
        a.push(line, t)
        if i == 12:
            if fault == "lost":
                a.lost()
            else:
                a.push(1 - line if fault == "noise" else line, t + (2_000 if fault == "noise" else 20_000))
    (spoiled,) = a.poll(10**9)
    assert isinstance(spoiled, WiegandError)
    assert why in str(spoiled)
    for line, t in _pulses(bits, start=2 * 10**9):
        a.push(line, t)
    assert a.poll(3 * 10**9) == [bits]  # the next presentation reads


def test_events_lost_between_frames_spoil_the_frame_they_belonged_to() -> None:
    a = FrameAssembler()
    bits = encode("H10301", facility=200, card=65000)
    a.lost()  # the kernel dropped this frame's first edges; the rest follow
    for line, t in _pulses(bits[5:]):
        a.push(line, t)
    (spoiled,) = a.poll(10**9)
    assert isinstance(spoiled, WiegandError)
    assert "lost" in str(spoiled)
    for line, t in _pulses(bits, start=2 * 10**9):
        a.push(line, t)
    assert a.poll(3 * 10**9) == [bits]


def test_assembler_spoils_an_endless_burst() -> None:
    a = FrameAssembler()
    for line, t in _pulses([1, 0] * 40):
        a.push(line, t)
    (spoiled,) = a.poll(10**9)
    assert isinstance(spoiled, WiegandError)
    assert "more than 64 bits" in str(spoiled)


def test_keypad_buffer_clear_enter_and_pause() -> None:
    k = wiegand.KeypadBuffer(timeout_ns=5 * 10**9)
    t = 0
    for key in (1, 2, wiegand.KEY_CLEAR, 7, 3, 1, 9):
        t += 10**8
        assert k.press(key, t) is None
    assert k.press(wiegand.KEY_ENTER, t + 10**8) == "7319"
    assert k.press(4, t + 10**9) is None
    assert k.press(wiegand.KEY_ENTER, t + 10**9 + 6 * 10**9) is None  # the pause abandoned "4"


def expect(reader: WiegandReader, timeout_s: float, kind: str, value: str) -> None:
    got = reader.read(timeout_s)
    assert got is not None
    assert (got.kind, got.value) == (kind, value)


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class ScriptedSource:
    """Pulses handed out as a scripted clock reaches them (a pure test of the reader's loop)."""

    def __init__(self, clock: Clock, pulses: list[Pulse]) -> None:
        self.clock = clock
        self.pulses = pulses
        self.closed = False

    def wait(self, timeout_s: float) -> list[Pulse]:
        self.clock.now += max(1, int(timeout_s * 1e9))
        due = [p for p in self.pulses if p is LOST or p.t_ns <= self.clock.now]
        self.pulses = [p for p in self.pulses if p not in due]
        return due

    def levels(self) -> tuple[bool, bool]:
        return True, True  # both lines idle high: wired right

    def close(self) -> None:
        self.closed = True


def test_reader_yields_cards_and_pins_and_drops_bad_frames(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    bits = encode("W34", facility=513, card=4242)
    pin = [b for key in (4, 0, 4, 2, 11) for b in wiegand.encode_key(key, width=8)]
    pulses = [Pulse(b, 1_000_000 + i * 2_000_000) for i, b in enumerate(bits)]
    start = 500_000_000
    for key in (4, 0, 4, 2, 11):
        pulses += [Pulse(b, start + i * 2_000_000) for i, b in enumerate(wiegand.encode_key(key, width=8))]
        start += 100_000_000
    broken = list(bits)
    broken[5] ^= 1
    pulses += [Pulse(b, 2_000_000_000 + i * 2_000_000) for i, b in enumerate(broken)]
    assert len(pin) == 40
    source = ScriptedSource(clock, pulses)
    reader = WiegandReader(source, formats=["H10301", "W34"], value="facility-card", clock_ns=clock)
    expect(reader, 1.0, "card", "0051304242")
    expect(reader, 2.0, "pin", "4042")
    with caplog.at_level(logging.WARNING):
        assert reader.read(3.0) is None
    assert reader.rejected == 1
    assert "parity" in caplog.text
    assert "4242" not in caplog.text
    reader.close()
    assert source.closed


def test_sim_source_through_the_fifo_with_real_timing(tmp_path: Path) -> None:
    """The demo's path: ``card:N`` and ``pin:N`` lines in the FIFO become Wiegand pulses, which the
    real assembler and codec read back; a fault in between is dropped and the next card reads."""
    fifo = tmp_path / "credential.fifo"
    reader = open_card_reader(
        "wiegand", control=fifo, gpio=GpioOffer(chip="sim", simulated=True), wiegand_formats=["H10301"]
    )
    assert isinstance(reader, WiegandReader)
    source = reader.source
    assert isinstance(source, SimWiegandSource)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"card:1191993\npin:2580\n")
        os.close(fd)
        expect(reader, 2.0, "card", "1191993")
        expect(reader, 2.0, "pin", "2580")
        for fault in ("noise", "bounce", "drop", "lost"):
            source.fault(fault)
            source.present(facility=18, card=12345)
            assert reader.read(0.3) is None, fault
        source.present(facility=18, card=12345)
        expect(reader, 2.0, "card", "1191993")
        assert reader.rejected == 4
        with pytest.raises(ValueError, match="24 data bits"):
            source.present_number(1 << 24)
    finally:
        reader.close()


def test_wiegand_needs_lines_on_real_gpio_and_reports_a_missing_gpiod() -> None:
    with pytest.raises(HardwareError, match="no D0/D1 lines"):
        open_card_reader("wiegand", gpio=GpioOffer(chip="/dev/gpiochip0"))
    try:
        import gpiod  # noqa: F401
    except ImportError:
        with pytest.raises(HardwareError, match="gpiod package is not installed"):
            open_card_reader("wiegand", gpio=GpioOffer(chip="/dev/gpiochip0", wiegand_d0=5, wiegand_d1=6))
    with pytest.raises(HardwareError, match="unknown Wiegand format"):
        WiegandReader(ScriptedSource(Clock(), []), formats=["H99999"])


def test_gpiod_source_on_a_missing_chip_is_a_clear_hardware_error() -> None:
    pytest.importorskip("gpiod", reason="the gpio extra is not installed")
    with pytest.raises(HardwareError, match="does not exist") as info:
        open_card_reader("wiegand", gpio=GpioOffer(chip="/dev/gpiochip-not-here", wiegand_d0=5, wiegand_d1=6))
    assert "gpio.chip" in info.value.hint


def test_gpiod_source_maps_lines_marks_lost_events_and_reads_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """GpiodEdgeSource over a stand-in for the libgpiod 2.x module (no GPIO chip exists here): the
    request it makes, D0/D1 by offset, a gap in the kernel's sequence numbers becomes LOST."""
    from tests.gpiod_standin import Event, Request, install

    batches = [[Event(23, 1000, 1), Event(22, 3000, 2)], [Event(23, 9000, 5)]]
    request = Request([22, 23], batches, {})
    line, made = install(monkeypatch, request)
    request.values = {22: line.Value.ACTIVE, 23: line.Value.INACTIVE}
    from edge.credentials.wiegand_reader import GpiodEdgeSource

    source = GpiodEdgeSource("/dev/gpiochip0", 22, 23)
    assert made["chip"] == "/dev/gpiochip0"
    assert made["event_buffer_size"] == 256
    assert made["config"] == {(22, 23): {"edge_detection": line.Edge.FALLING, "bias": line.Bias.PULL_UP}}
    assert source.wait(0.1) == [Pulse(1, 1000), Pulse(0, 3000)]
    assert source.wait(0.1) == [LOST, Pulse(1, 9000)]  # seqno 3 and 4 were overwritten in the kernel
    assert source.wait(0.1) == []
    assert source.levels() == (True, False)
    reader = WiegandReader(source)
    assert reader.idle_problem() == "Wiegand D1 held low while idle"
    reader.close()
    assert request.released
