"""Wiegand reader hardware-in-the-loop: the simulated D0/D1 lines by default, a real reader with
``--wiegand-chip``.

    pytest hil_tests/test_wiegand_hil.py                                   # simulator
    pytest -s hil_tests/test_wiegand_hil.py --wiegand-chip /dev/gpiochip0 \\
        --wiegand-d0 5 --wiegand-d1 6 --wiegand-format H10301 --wiegand-card 1191993 [--wiegand-keypad]

On hardware the operator presents the test card (whose number, as the data bits in decimal, is
``--wiegand-card``; most readers in line mode print it) and types on the keypad when asked. The
same checks run on both: the lines idle high, every presentation decodes to the card, the pulse
train keeps Wiegand timing, and a PIN typed on the keypad arrives whole. Wiring: docs/credentials.md.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from edge.credentials.wiegand import FORMATS
from edge.credentials.wiegand_reader import EdgeSource, Pulse, SimWiegandSource, WiegandReader


class Recording:
    """An EdgeSource wrapper that keeps every pulse, so the timing on the wire can be checked."""

    def __init__(self, source: EdgeSource) -> None:
        self.source = source
        self.pulses: list[Pulse] = []

    def wait(self, timeout_s: float) -> list[Pulse]:
        got = self.source.wait(timeout_s)
        self.pulses += got
        return got

    def levels(self) -> tuple[bool, bool]:
        return self.source.levels()

    def close(self) -> None:
        self.source.close()


@dataclass
class WiegandRig:
    reader: WiegandReader
    recording: Recording
    card: str
    sim: SimWiegandSource | None
    keypad: bool
    said: list[str] = field(default_factory=list)

    def ask(self, text: str) -> None:
        """Tell the operator what to do, or do it with the simulator."""
        self.said.append(text)
        if self.sim is None:
            sys.stderr.write(f"\n>>> {text}\n")
            sys.stderr.flush()
        elif text.startswith("Present"):
            self.sim.present_number(int(self.card))
        elif text.startswith("Type"):
            self.sim.keys(text.split()[1], width=8)


@pytest.fixture(scope="module")
def wiegand(request: pytest.FixtureRequest) -> Iterator[WiegandRig]:
    opt = request.config.getoption
    fmt, card = opt("--wiegand-format"), opt("--wiegand-card")
    if fmt not in FORMATS:
        pytest.fail(f"--wiegand-format must be one of {', '.join(FORMATS)}")
    source: EdgeSource
    sim = None
    if opt("--wiegand-chip"):
        from edge.credentials.wiegand_reader import GpiodEdgeSource

        lines = [int(v) if v.isdigit() else v for v in (opt("--wiegand-d0"), opt("--wiegand-d1"))]
        source = GpiodEdgeSource(opt("--wiegand-chip"), lines[0], lines[1])
    else:
        source = sim = SimWiegandSource(format=fmt)
    recording = Recording(source)
    reader = WiegandReader(recording, formats=[fmt], value="number")
    try:
        yield WiegandRig(reader, recording, card, sim, keypad=bool(opt("--wiegand-keypad")) or sim is not None)
    finally:
        reader.close()


def test_the_lines_idle_high(wiegand: WiegandRig) -> None:
    assert wiegand.reader.idle_problem() is None


def test_every_presentation_reads_the_test_card(wiegand: WiegandRig) -> None:
    for attempt in (1, 2, 3):
        wiegand.ask(f"Present the test card (attempt {attempt} of 3), then take it away")
        got = wiegand.reader.read(30.0)
        assert got is not None, "no card read within 30 s"
        assert (got.kind, got.value) == ("card", wiegand.card)
    assert wiegand.reader.rejected == 0


def test_the_pulse_train_keeps_wiegand_timing(wiegand: WiegandRig) -> None:
    wiegand.recording.pulses.clear()
    wiegand.ask("Present the test card once more")
    assert wiegand.reader.read(30.0) is not None
    pulses = [p for p in wiegand.recording.pulses if p.line >= 0]
    fmt = FORMATS[wiegand.reader.formats[0]]
    assert len(pulses) == fmt.bits
    gaps = [(b.t_ns - a.t_ns) / 1e6 for a, b in itertools.pairwise(pulses)]
    # HID: 200 us to 20 ms between bits; the decoder's end-of-frame gap is 25 ms
    assert min(gaps) >= 0.2, f"bit intervals down to {min(gaps):.3f} ms"
    assert max(gaps) <= 20.0, f"bit intervals up to {max(gaps):.1f} ms"


def test_a_pin_typed_on_the_keypad_arrives_whole(wiegand: WiegandRig) -> None:
    if not wiegand.keypad:
        pytest.skip("no keypad (pass --wiegand-keypad for a reader with one)")
    wiegand.ask("Type 2580# on the keypad")
    got = wiegand.reader.read(60.0)
    assert got is not None, "no PIN within 60 s"
    assert (got.kind, got.value) == ("pin", "2580")
