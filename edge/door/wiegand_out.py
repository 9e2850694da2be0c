"""The door in Wiegand-output mode: the panel number as a Wiegand frame on two GPIO lines.

For panels without OSDP. The terminal takes a card reader's place on the panel's reader port: D0
and D1 idle high, each bit a low pulse on one of them (D0 for 0, D1 for 1), ``PULSE_NS`` (50 us)
wide and ``INTERVAL_NS`` (2 ms) apart, start to start; frames at least ``FRAME_GAP_NS`` apart. The
bits are the input side's formats (``edge.credentials.wiegand``: H10301, W34, H10304, H10302 with
their parity) or raw bits, from a ``PanelCredential``.

Lines: libgpiod through the helper the door and the Wiegand reader share
(``edge.door.gpiod_lines.request_lines``); "active" is a pulse, whether the GPIO drives the panel's
line through a level shifter (active low) or through an inverting transistor stage (active high,
``gpio.wiegand_out_inverted``). Timing: a ``PulseClock`` sleeps until just before each edge and
spins the last stretch, so a 50 us pulse stays near 50 us on an idle core; tests give a virtual
clock and check the schedule exactly (``tests/door/test_wiegand_out.py``).

``WiegandOutDoor`` sends from a thread of its own (``wiegand-out``), so ``report_card`` returns at
once; it is a ``DoorOutput`` too (status LED, indication), like the OSDP door.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from edge.door.base import DoorController, DoorEvent
from edge.door.panel import PanelLinkStatus
from edge.errors import HardwareError
from edge.osdp.carddata import PanelCredential

log = logging.getLogger(__name__)

PULSE_NS = 50_000
INTERVAL_NS = 2_000_000
FRAME_GAP_NS = 50_000_000  # the input side closes a frame after 25 ms of quiet; twice that here
SPIN_NS = 300_000  # sleep until this close to an edge, then spin
QUEUE = 8


class PulseClock(Protocol):
    def now_ns(self) -> int: ...

    def sleep_until(self, t_ns: int) -> None: ...


class MonotonicClock:
    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep_until(self, t_ns: int) -> None:
        while True:
            left = t_ns - time.monotonic_ns()
            if left <= 0:
                return
            if left > SPIN_NS:
                time.sleep((left - SPIN_NS) / 1e9)


class WiegandLines(Protocol):
    def pulse_line(self, line: int, active: bool) -> None:
        """Start (``active``) or end a pulse on D0 (0) or D1 (1)."""

    def close(self) -> None: ...


class GpiodWiegandLines:
    """D0/D1 outputs through libgpiod 2.x, both idle (inactive) from the start."""

    def __init__(self, chip: str, d0: int | str, d1: int | str, *, inverted: bool = False) -> None:
        from edge.door.gpiod_lines import import_gpiod, request_lines

        what = f"Wiegand output (gpio.wiegand_out_d0/d1 = {d0}/{d1})"
        gpiod = import_gpiod(what)
        from gpiod.line import Direction, Value

        self._active, self._inactive = Value.ACTIVE, Value.INACTIVE
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE, active_low=not inverted)
        self._request: Any = request_lines(chip, {d0: settings, d1: settings}, what=what)
        self._lines = (d0, d1)

    def pulse_line(self, line: int, active: bool) -> None:
        self._request.set_value(self._lines[line], self._active if active else self._inactive)

    def close(self) -> None:
        try:
            for line in self._lines:
                self._request.set_value(line, self._inactive)
        finally:
            self._request.release()


class SimWiegandLines:
    """Records every edge as (line, active, t_ns) for tests and the demo."""

    def __init__(self, clock: PulseClock | None = None) -> None:
        self.clock = clock or MonotonicClock()
        self.edges: list[tuple[int, bool, int]] = []
        self.closed = False

    def pulse_line(self, line: int, active: bool) -> None:
        self.edges.append((line, active, self.clock.now_ns()))

    def close(self) -> None:
        self.closed = True


class WiegandEmitter:
    """Bits out on two lines with Wiegand timing. ``emit`` blocks for the frame (about 2 ms a bit)."""

    def __init__(
        self,
        lines: WiegandLines,
        *,
        pulse_ns: int = PULSE_NS,
        interval_ns: int = INTERVAL_NS,
        frame_gap_ns: int = FRAME_GAP_NS,
        clock: PulseClock | None = None,
    ) -> None:
        if not 20_000 <= pulse_ns <= 100_000 or not 200_000 <= interval_ns <= 20_000_000 or pulse_ns >= interval_ns:
            raise HardwareError("Wiegand timing outside 20-100 us pulses, 0.2-20 ms intervals")
        self.lines = lines
        self.pulse_ns = pulse_ns
        self.interval_ns = interval_ns
        self.frame_gap_ns = frame_gap_ns
        self.clock = clock or MonotonicClock()
        self._free_ns = 0  # the next frame may not start before this

    def emit(self, bits: Sequence[int]) -> None:
        start = max(self.clock.now_ns(), self._free_ns)
        for i, bit in enumerate(bits):
            edge = start + i * self.interval_ns
            self.clock.sleep_until(edge)
            self.lines.pulse_line(1 if bit else 0, True)
            self.clock.sleep_until(edge + self.pulse_ns)
            self.lines.pulse_line(1 if bit else 0, False)
        self._free_ns = start + (len(bits) - 1) * self.interval_ns + self.pulse_ns + self.frame_gap_ns


class WiegandOutDoor:
    """``PanelOutput`` and ``DoorOutput``: card reads become frames sent by the ``wiegand-out`` thread."""

    def __init__(self, door: DoorController, emitter: WiegandEmitter) -> None:
        self.door = door
        self.emitter = emitter
        self._queue: deque[PanelCredential] = deque()
        self._ready = threading.Condition()
        self._stop = False
        self.sent = 0
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name="wiegand-out", daemon=True)
        self._thread.start()

    def report_card(self, credential: PanelCredential) -> None:
        with self._ready:
            if len(self._queue) >= QUEUE:
                raise HardwareError("the Wiegand output is behind: card reads are queued faster than they are sent")
            self._queue.append(credential)
            self._ready.notify()

    def flush(self, timeout_s: float) -> bool:
        """True once every queued frame has been sent."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        return True

    _busy = False

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stop:
                    self._ready.wait()
                if self._stop:
                    return
                credential = self._queue.popleft()
                self._busy = True
            try:
                self.emitter.emit(credential.bits)
                self.sent += 1
                self.failed = None
            except Exception as exc:  # a line that cannot be driven: say so, keep serving
                self.failed = f"{exc.__class__.__name__}"
                log.error("Wiegand output failed: %s", exc.__class__.__name__)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

    def link_status(self) -> PanelLinkStatus:
        if self.failed:
            return PanelLinkStatus("wiegand-out", False, f"the last frame failed ({self.failed})")
        return PanelLinkStatus("wiegand-out", True, f"{self.sent} frame(s) sent (Wiegand has no reply to check)")

    def pulse(self, seconds: float, now: float) -> None:
        self.door.pulse(seconds, now)

    def indicate(self, alarmed: bool) -> None:
        self.door.indicate(alarmed)

    @property
    def relay_energised(self) -> bool:
        return self.door.relay_energised

    def service(self, now: float) -> list[DoorEvent]:
        return self.door.service(now)

    def close(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify_all()
        self._thread.join(timeout=2.0)
        try:
            self.emitter.lines.close()
        finally:
            self.door.close()
