"""A simulated door: a relay that records its history and inputs a test or the demo sets."""

from __future__ import annotations

import threading
import time


class SimLines:
    """Implements ``DoorLines``; thread-safe so a demo thread can press the button."""

    def __init__(self, *, contact_wired: bool = True, rte_wired: bool = True) -> None:
        self._lock = threading.Lock()
        self.energised = False
        self.history: list[tuple[float, bool]] = []  # (monotonic time, relay state) at each change
        self._rte = False if rte_wired else None
        self._closed = True if contact_wired else None
        self.closed_lines = False
        self.status_led = False
        self.led_history: list[tuple[float, bool]] = []  # (monotonic time, LED state) at each change

    def set_relay(self, energised: bool) -> None:
        with self._lock:
            if self.closed_lines:
                raise RuntimeError("door lines used after close")
            if energised != self.energised or not self.history:
                self.history.append((time.monotonic(), energised))
            self.energised = energised

    def set_status_led(self, on: bool) -> None:
        with self._lock:
            if self.closed_lines:
                raise RuntimeError("door lines used after close")
            if on != self.status_led or not self.led_history:
                self.led_history.append((time.monotonic(), on))
            self.status_led = on

    def request_to_exit(self) -> bool | None:
        with self._lock:
            return self._rte

    def door_closed(self) -> bool | None:
        with self._lock:
            return self._closed

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
