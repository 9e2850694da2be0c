"""The door in OSDP reader mode: a card read to the panel instead of a relay pulse.

``OsdpReaderDoor`` is both a ``DoorOutput`` (the gate loop's ``service``/``indicate``/``close`` keep
working) and a ``PanelOutput`` (``report_card``). The panel's commands arrive on the OSDP thread and
are applied on the next ``service(now)`` (the gate thread, which owns the lines):

* LED commands set the terminal's status LED (lit for any colour but "none"); until the panel's
  first LED command the door's own indication shows. ``on_led`` receives each change of colour
  (``"green"``, ``"red"``, ... or None when the panel gives the LED back): the agent plugs the R503
  ring in there.
* buzzer commands go to ``on_buzzer`` as they arrive (the terminal has no buzzer of its own).
* output control on output 0 drives the relay, where one is wired (``gpio.door_relay``): on, off,
  timed pulses, as the standard's control codes say.

The request-to-exit button and the door contact belong to the panel in this mode: the terminal
does not read them (``open_configured_door`` leaves them out), so it never opens the door itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from edge.door.base import DoorController, DoorEvent
from edge.door.panel import PanelLinkStatus
from edge.osdp.carddata import PanelCredential
from edge.osdp.commands import (
    BuzzerCommand,
    LedColour,
    LedCommand,
    LedProgram,
    OutputCommand,
    OutputProgram,
    PanelCommand,
)
from edge.osdp.pd import OsdpPeripheral

log = logging.getLogger(__name__)


class OsdpReaderDoor:
    def __init__(
        self,
        door: DoorController,
        pd: OsdpPeripheral,
        *,
        on_led: Callable[[LedColour | None], None] | None = None,
        on_buzzer: Callable[[BuzzerCommand], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.door = door
        self.pd = pd
        self.on_led = on_led
        self.on_buzzer = on_buzzer
        self._clock = clock
        self.led = LedProgram()
        self.output = OutputProgram()
        self._inbox: deque[tuple[float, PanelCommand]] = deque(maxlen=256)
        self._lock = threading.Lock()
        self._colour: LedColour | None = None
        pd.on_command = self._command

    # ----------------------------------------------------------------- the OSDP thread

    def _command(self, command: PanelCommand) -> None:
        if isinstance(command, BuzzerCommand):
            if self.on_buzzer is not None:
                self.on_buzzer(command)
            return
        with self._lock:
            self._inbox.append((self._clock(), command))

    # ----------------------------------------------------------------- PanelOutput

    def report_card(self, credential: PanelCredential) -> None:
        self.pd.report_card(credential)

    def link_status(self) -> PanelLinkStatus:
        state = self.pd.status()
        if not state.online:
            detail = f"no poll from the panel (address {self.pd.address})"
        elif self.pd.secure and not state.secure:
            detail = "the panel polls but the Secure Channel is down (key mismatch?)"
        else:
            detail = "panel polling" + (", Secure Channel up" if state.secure else ", PLAIN (no Secure Channel)")
        if state.port_error:
            detail += f"; port: {state.port_error}"
        ok = state.online and (state.secure or not self.pd.secure)
        return PanelLinkStatus("osdp", ok, detail)

    # ----------------------------------------------------------------- DoorOutput

    def pulse(self, seconds: float, now: float) -> None:
        """A local release of the relay; in reader mode only the panel's output control uses the relay."""
        self.door.pulse(seconds, now)

    def indicate(self, alarmed: bool) -> None:
        self.door.indicate(alarmed)

    @property
    def relay_energised(self) -> bool:
        return self.door.relay_energised

    def service(self, now: float) -> list[DoorEvent]:
        with self._lock:
            inbox = list(self._inbox)
            self._inbox.clear()
        for _, command in inbox:
            if isinstance(command, LedCommand) and command.led == 0:
                self.led.apply(command, now)
            elif isinstance(command, OutputCommand) and command.output == 0:
                self.output.apply(command, now)
        self.door.hold_relay(self.output.on(now), now)
        colour = self.led.colour(now)
        self.door.led_override = None if colour is None else colour != "none"
        if colour != self._colour:
            self._colour = colour
            if self.on_led is not None:
                try:
                    self.on_led(colour)
                except Exception as exc:  # the ring is a nicety; the door goes on
                    log.warning("LED ring callback failed: %s", exc.__class__.__name__)
        return self.door.service(now)

    def close(self) -> None:
        try:
            self.pd.close()
        finally:
            self.door.close()
