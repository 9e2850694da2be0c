"""The sensor module's touch output on a GPIO line: wait for a finger without polling the UART.

Without it the gate polls GenImg over the UART every 50 ms, all day (an R307 flashes its light on
every poll). With the profile's ``fingerprint.touch_gpio`` the finger thread sleeps on the line's
edge and captures only once a finger is on the glass. Polarity by family: the R503's WAKEUP goes
low when touched; the R307/AS608 TouchOut goes high.

A line that never fires (miswired, or a module batch without the output) would silence the
sensor, so the adapter still polls once every few seconds and says so when that poll, not the
line, found the finger (``edge.fingerprint.workflows.SensorWorkflows``).
"""

from __future__ import annotations

import threading
from typing import Protocol

from edge.errors import HardwareError


class TouchLine(Protocol):
    def wait(self, timeout_s: float) -> bool:
        """True as soon as a finger is on the sensor (at once if it already is); False at the timeout."""
        ...

    def close(self) -> None: ...


def active_low_for(family: str) -> bool:
    """The touch output's polarity for a sensor family: only the R503's WAKEUP is active low."""
    return family == "r503"


class GpiodTouchLine:
    """The touch output through libgpiod 2.x (both edges, so the current level is always known)."""

    def __init__(self, chip: str, line: int | str, *, active_low: bool) -> None:
        from edge.door.gpiod_lines import import_gpiod, request_lines

        what = f"the fingerprint sensor's touch output (fingerprint.touch_gpio = {line})"
        gpiod = import_gpiod(what)
        from gpiod.line import Bias, Edge

        settings = gpiod.LineSettings(edge_detection=Edge.BOTH, bias=Bias.PULL_UP, active_low=active_low)
        self._request = request_lines(chip, {line: settings}, what=what)
        self._line = line

    def _touched(self) -> bool:
        from gpiod.line import Value

        return bool(self._request.get_value(self._line) == Value.ACTIVE)

    def wait(self, timeout_s: float) -> bool:
        try:
            if self._touched():
                return True
            if self._request.wait_edge_events(max(0.0, timeout_s)):
                self._request.read_edge_events()  # the level, not the edges, says whether a finger is on
            return self._touched()
        except OSError as exc:
            raise HardwareError(
                f"reading the touch line failed: {exc.strerror or exc}", hint="check fingerprint.touch_gpio"
            ) from exc

    def close(self) -> None:
        self._request.release()


class SimTouchLine:
    """A touch output a test or a simulator drives (``set``)."""

    def __init__(self) -> None:
        self._on = threading.Event()
        self.waits = 0

    def set(self, touched: bool) -> None:
        if touched:
            self._on.set()
        else:
            self._on.clear()

    def wait(self, timeout_s: float) -> bool:
        self.waits += 1
        return self._on.wait(max(0.0, timeout_s))

    def close(self) -> None:
        self._on.clear()


def open_touch_line(chip: str, line: int | str | None, family: str, *, simulated: bool) -> TouchLine | None:
    """The profile's touch line, or None when it names none or the GPIO is simulated."""
    if line is None or simulated or chip == "sim":
        return None
    return GpiodTouchLine(chip, line, active_low=active_low_for(family))
