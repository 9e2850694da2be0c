"""The door behind one interface, with the timing logic kept apart from the lines it drives.

``DoorLines`` is the thin I/O shell (set the relay, read two inputs); ``DoorController`` is the
logic every backend shares: a relay pulse that ends at a deadline, edge detection on the inputs,
request-to-exit releasing the lock, and alarms for a door forced open or held open. The gate loop
calls ``service(now)`` on every iteration; nothing here starts a thread or sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from edge.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from edge.config.schema import GpioOffer

log = logging.getLogger(__name__)

DoorEventKind = Literal["request_to_exit", "door_opened", "door_closed", "forced_open", "held_open"]


@dataclass(frozen=True)
class DoorEvent:
    kind: DoorEventKind
    at: float


class DoorLines(Protocol):
    """The three lines of a door: one output, two inputs (``None`` when the input is not wired)."""

    def set_relay(self, energised: bool) -> None: ...

    def request_to_exit(self) -> bool | None:
        """True while the exit button is pressed."""

    def door_closed(self) -> bool | None:
        """True while the door contact reports the door closed."""

    def set_status_led(self, on: bool) -> None:
        """Light the terminal's status LED (a no-op when the profile wires none)."""

    def tamper_open(self) -> bool | None:
        """True while the case switch reports the case open (None: no switch wired)."""

    def close(self) -> None: ...


class DoorOutput(Protocol):
    """What the gate loop drives."""

    def pulse(self, seconds: float, now: float) -> None:
        """Release the lock for ``seconds`` (a later pulse extends an open one)."""

    def service(self, now: float) -> list[DoorEvent]:
        """End a pulse that is due, read the inputs and return what changed since the last call."""

    def indicate(self, alarmed: bool) -> None:
        """The status LED's state from the next ``service``: steady while all is well, blinking
        while any alarm is active (a device down, stale consent, a door forced or held open)."""

    @property
    def relay_energised(self) -> bool: ...

    def close(self) -> None: ...


class DoorController:
    """Pulse timing, input edges and door alarms over any ``DoorLines`` backend."""

    def __init__(
        self,
        lines: DoorLines,
        *,
        exit_pulse_s: float = 3.0,
        held_open_s: float = 30.0,
        open_grace_s: float = 2.0,
    ) -> None:
        self.lines = lines
        self.exit_pulse_s = exit_pulse_s
        self.held_open_s = held_open_s
        self.open_grace_s = open_grace_s  # a door may still swing open just after the relay drops
        self._until: float | None = None
        self._released_at: float | None = None
        self._rte_was = False
        self._closed_was: bool | None = None
        self._opened_at: float | None = None
        self._held_reported = False
        self.pulses: list[tuple[float, float]] = []  # (start, seconds): kept for tests and status
        self._alarmed = False
        self._led: bool | None = None
        self._hold = False
        #: set by a panel that drives the LED (OSDP reader mode); None: the door's own indication
        self.led_override: bool | None = None
        self.lines.set_relay(False)

    @property
    def relay_energised(self) -> bool:
        return self._until is not None or self._hold

    def hold_relay(self, on: bool, now: float) -> None:
        """Keep the relay energised until told otherwise (a panel's output control in reader mode)."""
        if on == self._hold:
            return
        self._hold = on
        if not on and self._until is None:
            self._released_at = now
        self.lines.set_relay(on or self._until is not None)

    def pulse(self, seconds: float, now: float) -> None:
        if seconds <= 0:
            raise ValueError("a door pulse must last more than 0 s")
        if self._until is None and not self._hold:
            self.lines.set_relay(True)
        self._until = max(self._until or now, now + seconds)
        self.pulses.append((now, seconds))
        log.info("door released for %.1f s", seconds)

    def indicate(self, alarmed: bool) -> None:
        self._alarmed = alarmed

    #: the status LED blinks at 1 Hz while an alarm is active
    BLINK_S = 0.5

    def service(self, now: float) -> list[DoorEvent]:
        led = not self._alarmed or int(now / self.BLINK_S) % 2 == 0
        if self.led_override is not None:
            led = self.led_override
        if led != self._led:
            self.lines.set_status_led(led)
            self._led = led
        events: list[DoorEvent] = []
        if self._until is not None and now >= self._until:
            if not self._hold:
                self.lines.set_relay(False)
                self._released_at = now
            self._until = None
        rte = bool(self.lines.request_to_exit())
        if rte and not self._rte_was:
            events.append(DoorEvent("request_to_exit", now))
            self.pulse(self.exit_pulse_s, now)
        self._rte_was = rte
        closed = self.lines.door_closed()
        if closed is not None:
            if self._closed_was is not None and closed != self._closed_was:
                if closed:
                    events.append(DoorEvent("door_closed", now))
                    self._opened_at = None
                    self._held_reported = False
                else:
                    events.append(DoorEvent("door_opened", now))
                    self._opened_at = now
                    recently = self._released_at is not None and now - self._released_at <= self.open_grace_s
                    if not self.relay_energised and not recently:
                        events.append(DoorEvent("forced_open", now))
            if (
                not closed
                and self._opened_at is not None
                and not self._held_reported
                and now - self._opened_at >= self.held_open_s
            ):
                events.append(DoorEvent("held_open", now))
                self._held_reported = True
            self._closed_was = closed
        return events

    def close(self) -> None:
        try:
            self.lines.set_relay(False)
            self.lines.set_status_led(False)  # a dark LED: the agent is not running
        finally:
            self._until = None
            self._hold = False
            self.lines.close()


def open_door(gpio: GpioOffer, *, exit_pulse_s: float = 3.0) -> DoorController:
    """The door the profile describes: simulated, or libgpiod lines (a missing ``gpiod`` is a loud error)."""
    if gpio.simulated or gpio.chip == "sim":
        from edge.door.sim import SimLines

        return DoorController(SimLines(), exit_pulse_s=exit_pulse_s)
    if gpio.door_relay is None:
        raise ConfigError(
            "profile", [ConfigProblem("profile", "gpio.door_relay", "a GPIO line for the door relay", "none")]
        )
    from edge.door.gpiod_lines import GpiodLines

    lines = GpiodLines(
        gpio.chip,
        relay=gpio.door_relay,
        request_to_exit=gpio.request_to_exit,
        door_contact=gpio.door_contact,
        status_led=gpio.status_led,
        relay_active_high=gpio.relay_active_high,
        tamper=gpio.tamper,
        tamper_open_high=gpio.tamper_open_level == "high",
    )
    return DoorController(lines, exit_pulse_s=exit_pulse_s)
