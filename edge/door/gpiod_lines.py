"""Door lines through libgpiod 2.x (the ``gpiod`` package, optional extra ``gpio``).

Imported only when a profile names a real GPIO chip. A missing package, a missing chip or a line
another process holds is a ``HardwareError`` that says what to do; never a silent fallback.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from edge.errors import HardwareError

log = logging.getLogger(__name__)

CONSUMER = "gate-edge"


def import_gpiod(what: str = "a door relay") -> Any:
    """The libgpiod 2.x bindings, or a ``HardwareError`` naming what needed them."""
    try:
        import gpiod
    except ImportError as exc:
        raise HardwareError(
            f"the profile drives {what} on GPIO but the gpiod package is not installed",
            hint="pip install 'gate-edge[gpio]' (libgpiod 2.x bindings), or set gpio.simulated = true",
        ) from exc
    major = str(getattr(gpiod, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 2:
        raise HardwareError(
            f"gpiod {getattr(gpiod, '__version__', '?')} is installed; this agent needs the 2.x bindings",
            hint="pip install 'gpiod>=2.1'",
        )
    return gpiod


def request_lines(chip: str, config: dict[Any, Any], *, what: str, **options: Any) -> Any:
    """``gpiod.request_lines`` with the failures an installer meets turned into ``HardwareError``s."""
    gpiod = import_gpiod(what)
    try:
        return gpiod.request_lines(chip, consumer=CONSUMER, config=config, **options)
    except FileNotFoundError as exc:
        raise HardwareError(
            f"GPIO chip {chip} does not exist", hint="check gpio.chip in the device profile (ls /dev/gpiochip*)"
        ) from exc
    except PermissionError as exc:
        raise HardwareError(f"no permission to open {chip}", hint="add the service user to the gpio group") from exc
    except OSError as exc:
        raise HardwareError(
            f"cannot request the GPIO lines of {what} on {chip}: {exc.strerror or exc}",
            hint="another process may hold the lines (gpioinfo shows the consumer); check the line names",
        ) from exc


class GpiodLines:
    """Implements ``DoorLines`` on one request holding the relay output, the LED and the inputs.

    The relay may be absent (a reader-mode terminal whose panel drives the lock); the tamper line
    is read from other threads too, so every use of the request holds one lock."""

    def __init__(
        self,
        chip: str,
        *,
        relay: int | str | None,
        request_to_exit: int | str | None = None,
        door_contact: int | str | None = None,
        status_led: int | str | None = None,
        relay_active_high: bool = True,
        inputs_active_low: bool = True,
        tamper: int | str | None = None,
        tamper_open_high: bool = True,
    ) -> None:
        gpiod = import_gpiod()
        from gpiod.line import Bias, Direction, Value

        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        self.relay = relay
        self.rte = request_to_exit
        self.contact = door_contact
        self.led = status_led
        self.tamper = tamper
        self._lock = threading.Lock()
        config: dict[int | str, Any] = {}
        if relay is not None:
            config[relay] = gpiod.LineSettings(
                direction=Direction.OUTPUT, output_value=Value.INACTIVE, active_low=not relay_active_high
            )
        if status_led is not None:  # an LED (with its resistor) from the line to ground
            config[status_led] = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        for line in (request_to_exit, door_contact):
            if line is not None:
                # Dry contacts to ground with the internal pull-up: closed contact reads active.
                config[line] = gpiod.LineSettings(
                    direction=Direction.INPUT, bias=Bias.PULL_UP, active_low=inputs_active_low
                )
        if tamper is not None:  # active means open, whatever the switch's level when open
            config[tamper] = gpiod.LineSettings(
                direction=Direction.INPUT, bias=Bias.PULL_UP, active_low=not tamper_open_high
            )
        self._request = request_lines(chip, config, what="the door's lines")

    def _get(self, line: int | str | None) -> bool | None:
        if line is None:
            return None
        with self._lock:
            return bool(self._request.get_value(line) == self._active)

    def _set(self, line: int | str | None, on: bool) -> None:
        if line is not None:
            with self._lock:
                self._request.set_value(line, self._active if on else self._inactive)

    def set_relay(self, energised: bool) -> None:
        self._set(self.relay, energised)

    def set_status_led(self, on: bool) -> None:
        self._set(self.led, on)

    def request_to_exit(self) -> bool | None:
        return self._get(self.rte)

    def door_closed(self) -> bool | None:
        return self._get(self.contact)

    def tamper_open(self) -> bool | None:
        return self._get(self.tamper)

    def close(self) -> None:
        try:
            self._set(self.relay, False)
        finally:
            with self._lock:
                self._request.release()
