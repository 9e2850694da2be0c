"""The case (tamper) switch: a debounced line the agent polls or waits on.

The line is read through the door's GPIO layer (``DoorLines.tamper_open``: libgpiod, or ``SimLines``
where a test or the demo opens the case). ``TamperSwitch`` turns the readings into events: the case
opened, the case closed again. A reading must hold for ``debounce_s`` before it counts (a switch
bounces; a knock on the housing must not be an alarm). A case found open when the switch is first
read is an ``opened`` event too: a terminal must not start quietly with its case open.

``poll()`` suits a loop that runs anyway (the gate's tick); ``wait(timeout_s)`` suits a thread of
its own that must react within a second (crypto-erase on tamper, issue 15).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class TamperInput(Protocol):
    def tamper_open(self) -> bool | None:
        """True while the case is open; None when no switch is wired."""
        ...


@dataclass(frozen=True)
class TamperEvent:
    opened: bool  # True: the case was opened; False: closed again
    at: float  # monotonic seconds


class TamperSwitch:
    def __init__(
        self,
        line: TamperInput,
        *,
        debounce_s: float = 0.05,
        poll_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.line = line
        self.debounce_s = debounce_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._state: bool | None = None
        self._candidate: bool | None = None
        self._since = 0.0

    @property
    def wired(self) -> bool:
        return self.line.tamper_open() is not None

    @property
    def state(self) -> bool | None:
        """The debounced state: True open, False closed, None not yet known or not wired."""
        return self._state

    def poll(self, now: float | None = None) -> TamperEvent | None:
        """Read the line once; the event if this reading settles a change."""
        at = self._clock() if now is None else now
        reading = self.line.tamper_open()
        if reading is None:
            return None
        if reading != self._candidate:
            self._candidate = reading
            self._since = at
        if reading == self._state or at - self._since < self.debounce_s:
            return None
        first = self._state is None
        self._state = reading
        if first and not reading:
            return None  # found closed at start: nothing to report
        return TamperEvent(opened=reading, at=at)

    def wait(self, timeout_s: float) -> TamperEvent | None:
        """Poll every ``poll_s`` until a change settles or ``timeout_s`` passes."""
        deadline = self._clock() + timeout_s
        while True:
            event = self.poll()
            if event is not None:
                return event
            left = deadline - self._clock()
            if left <= 0:
                return None
            self._sleep(min(self.poll_s, left))

    def describe(self) -> str:
        """For selftest: the switch's state now (one reading, not debounced)."""
        reading = self.line.tamper_open()
        if reading is None:
            return "no tamper switch wired (gpio.tamper)"
        return "case OPEN" if reading else "case closed"
