"""A Wiegand card reader or keypad as a ``CredentialReader``: edges in, credentials out.

The reader logic (``WiegandReader``) takes pulses from a small ``EdgeSource``:

* ``GpiodEdgeSource``: D0 and D1 through libgpiod 2.x (falling edges, pull-ups, kernel timestamps,
  a kernel buffer large enough for the longest frame, lost events detected by sequence numbers).
* ``SimWiegandSource``: a simulated reader that turns ``card:NUMBER`` / ``pin:1234`` lines (the
  simulated reader's FIFO syntax) or calls into pulses with real Wiegand timing, and can inject
  line faults. GPIO is the one part the simulator fakes; the codec and assembler are the real ones.

Wiring (docs/credentials.md): most readers drive 5 V on D0/D1. A Raspberry Pi or Jetson GPIO is
3.3 V only: use a level shifter or two opto-isolators, and share the reader's ground.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.credentials.base import Credential
from edge.credentials.hashing import CredentialFormatError, normalise
from edge.credentials.plumbing import ControlFifo, WakePipe
from edge.credentials.wiegand import (
    DEFAULT_FORMATS,
    FORMATS,
    KEY_ENTER,
    CardRead,
    FrameAssembler,
    KeypadBuffer,
    WiegandError,
    WiegandValue,
    decode,
    encode,
    encode_key,
)
from edge.errors import HardwareError

log = logging.getLogger(__name__)

#: kernel edge-event buffer: 256 events hold several of the longest frames if the agent stalls
EVENT_BUFFER = 256


@dataclass(frozen=True)
class Pulse:
    line: int  # 0 = D0, 1 = D1
    t_ns: int  # CLOCK_MONOTONIC, as the kernel stamps GPIO edge events


#: an EdgeSource returns this in place of pulses it had to drop
LOST = Pulse(-1, 0)


class EdgeSource(Protocol):
    def wait(self, timeout_s: float) -> list[Pulse]:
        """Pulses seen within ``timeout_s`` (possibly none), oldest first; a pulse on line -1
        (``LOST``) marks edges the source had to drop."""
        ...

    def levels(self) -> tuple[bool, bool]:
        """D0 and D1 now, True for high (idle). A line held low means a wiring fault."""
        ...

    def close(self) -> None: ...


class WiegandReader:
    """Implements ``CredentialReader`` over an ``EdgeSource``.

    Cards become ``Credential("card", value)`` in the ``value`` style; keypad digits collect into
    ``Credential("pin", ...)`` on ``#``. Spoiled or unknown frames are logged (without their bits)
    and dropped: a person presents the card again, as with any reader."""

    def __init__(
        self,
        source: EdgeSource,
        *,
        formats: Sequence[str] = DEFAULT_FORMATS,
        value: WiegandValue = "number",
        name: str = "wiegand",
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise HardwareError(
                f"unknown Wiegand format {unknown[0]!r}", hint=f"use one of {', '.join(FORMATS)} in wiegand_formats"
            )
        self.source = source
        self.formats = tuple(formats)
        self.value = value
        self.name = name
        self._clock = clock_ns
        self._frames = FrameAssembler()
        self._keypad = KeypadBuffer()
        self._ready: deque[Credential] = deque()
        self.rejected = 0  # frames dropped (spoiled, unknown length, bad parity)

    def read(self, timeout_s: float) -> Credential | None:
        deadline = self._clock() + int(max(0.0, timeout_s) * 1e9)
        while not self._ready:
            now = self._clock()
            for frame in self._frames.poll(now):
                self._take(frame, now)
            if self._ready:
                break
            if now >= deadline:
                return None  # an open frame stays open: the next read finishes it
            closing = self._frames.deadline_ns()
            until = deadline if closing is None else min(deadline, closing)
            for pulse in self.source.wait((until - now) / 1e9):
                if pulse.line < 0:
                    self._frames.lost()
                    continue
                for frame in self._frames.push(pulse.line, pulse.t_ns):
                    self._take(frame, pulse.t_ns)
        return self._ready.popleft()

    def _take(self, frame: list[int] | WiegandError, t_ns: int) -> None:
        try:
            if isinstance(frame, WiegandError):
                raise frame
            read = decode(frame, self.formats)
        except WiegandError as exc:
            self.rejected += 1
            log.warning("%s reader: %s", self.name, exc)
            return
        if isinstance(read, CardRead):
            self._ready.append(Credential("card", read.value(self.value), self.name))
            return
        pin = self._keypad.press(read.key, t_ns)
        if pin is None:
            return
        try:
            normalise("pin", pin)
        except CredentialFormatError as exc:
            self.rejected += 1
            log.warning("%s keypad: %s", self.name, exc)
            return
        self._ready.append(Credential("pin", pin, self.name))

    def idle_problem(self) -> str | None:
        """What is wrong with the idle lines (for ``edge-provision selftest``), or None."""
        low = [name for name, high in zip(("D0", "D1"), self.source.levels(), strict=True) if not high]
        return f"Wiegand {' and '.join(low)} held low while idle" if low else None

    def close(self) -> None:
        self.source.close()


# --------------------------------------------------------------------------- libgpiod


class GpiodEdgeSource:
    """D0/D1 falling edges from libgpiod 2.x (optional extra ``gpio``)."""

    def __init__(self, chip: str, d0: int | str, d1: int | str) -> None:
        from edge.door.gpiod_lines import import_gpiod, request_lines

        what = f"a Wiegand reader (gpio.wiegand_d0/d1 = {d0}/{d1})"
        gpiod = import_gpiod(what)
        from gpiod.line import Bias, Edge

        settings = gpiod.LineSettings(edge_detection=Edge.FALLING, bias=Bias.PULL_UP)
        self._request = request_lines(chip, {(d0, d1): settings}, what=what, event_buffer_size=EVENT_BUFFER)
        offsets = list(self._request.offsets)
        self._line = {offsets[0]: 0, offsets[1]: 1}
        self._seqno: int | None = None

    def wait(self, timeout_s: float) -> list[Pulse]:
        try:
            if not self._request.wait_edge_events(timeout_s):
                return []
            events = self._request.read_edge_events()
        except OSError as exc:
            raise HardwareError(
                f"reading the Wiegand lines failed: {exc.strerror or exc}", hint="check the GPIO chip and wiring"
            ) from exc
        pulses: list[Pulse] = []
        for event in events:
            if self._seqno is not None and event.global_seqno != self._seqno + 1:
                pulses.append(LOST)  # the kernel buffer overflowed and dropped the oldest edges
            self._seqno = event.global_seqno
            pulses.append(Pulse(self._line[event.line_offset], int(event.timestamp_ns)))
        return pulses

    def levels(self) -> tuple[bool, bool]:
        from gpiod.line import Value

        d0, d1 = self._request.get_values()
        return d0 == Value.ACTIVE, d1 == Value.ACTIVE

    def close(self) -> None:
        self._request.release()


# --------------------------------------------------------------------------- simulator


class SimWiegandSource:
    """A simulated reader on the D0/D1 lines: cards and keys become timed pulses.

    ``present(card=..., facility=...)`` and ``keys("1234#")`` queue a frame; with ``control`` a FIFO
    takes ``card:NUMBER`` (the number is the frame's data bits, so ``number`` style reads it back
    unchanged) and ``pin:1234`` lines. ``fault`` spoils the next frame: ``noise`` (both lines pulse
    together), ``bounce`` (a pulse repeats 20 us later), ``drop`` (a bit is lost: wrong length or
    parity) or ``lost`` (the source reports dropped events)."""

    PULSE_INTERVAL_NS = 2_000_000  # a typical reader: one bit every 2 ms
    FRAME_GAP_NS = 40_000_000  # between frames (longer than the assembler's 25 ms end gap)

    def __init__(
        self, *, format: str = "H10301", control: Path | None = None, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        if format not in FORMATS:
            raise HardwareError(f"unknown Wiegand format {format!r}", hint=f"use one of {', '.join(FORMATS)}")
        self.format = format
        self._clock = clock_ns
        self._lock = threading.Lock()
        self._pending: deque[Pulse] = deque()
        self._next_free_ns = 0
        self._held_low: set[int] = set()
        self._fault: str | None = None
        self._wake = WakePipe()
        self._control = ControlFifo(control) if control is not None else None

    # -- what a person or a test does at the reader

    def present(self, *, card: int, facility: int | None = None) -> None:
        self.send(encode(self.format, card=card, facility=facility))

    def present_number(self, number: int) -> None:
        """A card whose data bits (between the parity bits) read as ``number``."""
        fmt = FORMATS[self.format]
        width = fmt.bits - 2
        if not 0 <= number < 1 << width:
            raise ValueError(f"{self.format} carries {width} data bits; the card number does not fit")
        data = [(number >> (width - 1 - i)) & 1 for i in range(width)]
        bits = [0, *data, 0]
        bits[0] = sum(bits[1 : fmt.even[1] + 1]) % 2
        bits[-1] = 1 - sum(bits[fmt.odd[0] : fmt.odd[1]]) % 2
        self.send(bits)

    def keys(self, text: str, *, width: int = 4) -> None:
        """Key presses: digits, ``*`` and ``#``, one frame each."""
        for ch in text:
            key = 10 if ch == "*" else KEY_ENTER if ch == "#" else int(ch)
            self.send(encode_key(key, width=8 if width == 8 else 4))

    def hold_low(self, line: int, low: bool = True) -> None:
        """Hold D0 (0) or D1 (1) low, as a shorted wire or an unpowered level shifter would."""
        (self._held_low.add if low else self._held_low.discard)(line)

    def levels(self) -> tuple[bool, bool]:
        return 0 not in self._held_low, 1 not in self._held_low

    def fault(self, kind: str) -> None:
        if kind not in ("noise", "bounce", "drop", "lost"):
            raise ValueError("faults: noise, bounce, drop, lost")
        self._fault = kind

    def send(self, bits: Sequence[int]) -> None:
        """One frame's pulses, timed from now (or after the frame before it)."""
        with self._lock:
            fault, self._fault = self._fault, None
            t = max(self._clock(), self._next_free_ns)
            pulses: list[Pulse] = []
            for i, bit in enumerate(bits):
                if fault == "drop" and i == len(bits) // 2:
                    continue
                pulses.append(Pulse(int(bit), t + i * self.PULSE_INTERVAL_NS))
            if fault == "noise":
                mid = pulses[len(pulses) // 2]
                pulses.insert(len(pulses) // 2 + 1, Pulse(1 - mid.line, mid.t_ns + 2_000))
            elif fault == "bounce":
                mid = pulses[len(pulses) // 2]
                pulses.insert(len(pulses) // 2 + 1, Pulse(mid.line, mid.t_ns + 20_000))
            elif fault == "lost":
                pulses.insert(len(pulses) // 2, LOST)
            self._pending.extend(pulses)
            self._next_free_ns = t + len(bits) * self.PULSE_INTERVAL_NS + self.FRAME_GAP_NS
        self._wake.wake()

    # -- EdgeSource

    def _drain_control(self) -> None:
        for credential in self._control.credentials() if self._control is not None else []:
            if credential.kind == "card" and credential.value.isdigit():
                try:
                    self.present_number(int(credential.value))
                except ValueError as exc:
                    log.warning("simulated Wiegand card ignored: %s", exc)
            elif credential.kind == "pin":
                self.keys(credential.value + "#")
            else:
                log.warning("simulated Wiegand reader takes card:DIGITS and pin:DIGITS lines only")

    def wait(self, timeout_s: float) -> list[Pulse]:
        deadline = self._clock() + int(max(0.0, timeout_s) * 1e9)
        while True:
            self._drain_control()
            now = self._clock()
            with self._lock:
                due: list[Pulse] = []
                while self._pending and (self._pending[0] is LOST or self._pending[0].t_ns <= now):
                    due.append(self._pending.popleft())
                next_ns = self._pending[0].t_ns if self._pending else None
            if due:
                return due
            if now >= deadline:
                return []
            until = deadline if next_ns is None else min(deadline, next_ns)
            self._wake.wait([self._control.fd] if self._control is not None else [], (until - now) / 1e9)

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        self._wake.close()
