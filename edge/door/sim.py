"""A simulated door: a relay that records its history and inputs a test or the demo sets."""

from __future__ import annotations

import threading
import time


class SimLines:
    """Implements ``DoorLines``; thread-safe so a demo thread can press the button."""

    def __init__(self, *, contact_wired: bool = True, rte_wired: bool = True, tamper_wired: bool = True) -> None:
        self._lock = threading.Lock()
        self.energised = False
        self.history: list[tuple[float, bool]] = []  # (monotonic time, relay state) at each change
        self._rte = False if rte_wired else None
        self._closed = True if contact_wired else None
        self.closed_lines = False
        self.status_led = False
        self.led_history: list[tuple[float, bool]] = []  # (monotonic time, LED state) at each change
        self._tamper_open = False if tamper_wired else None

    def _record(self, history: list[tuple[float, bool]], was: bool, now: bool) -> None:
        """Refuse use after close; note a change of an output (the first setting too)."""
        if self.closed_lines:
            raise RuntimeError("door lines used after close")
        if now != was or not history:
            history.append((time.monotonic(), now))

    def set_relay(self, energised: bool) -> None:
        with self._lock:
            self._record(self.history, self.energised, energised)
            self.energised = energised

    def set_status_led(self, on: bool) -> None:
        with self._lock:
            self._record(self.led_history, self.status_led, on)
            self.status_led = on

    def request_to_exit(self) -> bool | None:
        with self._lock:
            return self._rte

    def door_closed(self) -> bool | None:
        with self._lock:
            return self._closed

    def tamper_open(self) -> bool | None:
        with self._lock:
            return self._tamper_open

    def open_case(self, opened: bool = True) -> None:
        """Open (or close again) the terminal's case: the tamper switch follows."""
        with self._lock:
            if self._tamper_open is not None:
                self._tamper_open = opened

    def press_exit(self, pressed: bool = True) -> None:
        with self._lock:
            self._rte = pressed

    def set_door_closed(self, closed: bool) -> None:
        with self._lock:
            self._closed = closed

    def close(self) -> None:
        with self._lock:
            self.energised = False
            self.closed_lines = True
