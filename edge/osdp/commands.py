"""The panel's commands to a reader, as typed values, and the LED and output programs they set.

Pure. ``parse_command`` turns the dict libosdp hands the PD's command callback into a typed command
(or an ``OsdpCommandError`` for a value outside the standard: the PD then refuses the command with
a NAK). ``LedProgram`` and ``OutputProgram`` hold what the panel asked for and answer, for a moment
in time, which colour an LED shows and whether an output is on; the door evaluates them on every
``service(now)``. Times in OSDP commands are in units of 100 ms.

OSDP's LED command carries a permanent and a temporary setting; libosdp's Python binding passes one
of them (the temporary one when it is set), which is what ``LedCommand`` holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from edge.errors import HardwareError

LedColour = Literal["none", "red", "green", "amber", "blue", "magenta", "cyan", "white"]
COLOURS: tuple[LedColour, ...] = ("none", "red", "green", "amber", "blue", "magenta", "cyan", "white")

OutputAction = Literal["nop", "off", "on", "off_after_timer", "on_after_timer", "pulse_on", "pulse_off"]
OUTPUT_ACTIONS: tuple[OutputAction, ...] = (
    "nop",  # 0: leave the output as it is
    "off",  # 1: permanent off, abort a timed operation
    "on",  # 2: permanent on, abort a timed operation
    "off_after_timer",  # 3: permanent off, let a timed operation finish
    "on_after_timer",  # 4: permanent on, let a timed operation finish
    "pulse_on",  # 5: on for the timer, then the permanent state again
    "pulse_off",  # 6: off for the timer, then the permanent state again
)

# libosdp's command ids (osdp.h enum osdp_cmd_e); fixed by the library's ABI
CMD_OUTPUT, CMD_LED, CMD_BUZZER, CMD_TEXT, CMD_KEYSET, CMD_COMSET = 1, 2, 3, 4, 5, 6
CMD_NAMES = {1: "output", 2: "led", 3: "buzzer", 4: "text", 5: "keyset", 6: "comset", 7: "comset_done"}
CMD_NAMES |= {8: "manufacturer", 9: "file_transfer", 10: "status"}


class OsdpCommandError(HardwareError, ValueError):
    """A command from the panel that this reader cannot follow (a value outside the standard)."""


def _int(command: Mapping[str, object], key: str, lo: int, hi: int) -> int:
    value = command.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise OsdpCommandError(f"the panel's command has {key} outside {lo}..{hi}")
    return value


def _colour(command: Mapping[str, object], key: str) -> LedColour:
    return COLOURS[_int(command, key, 0, len(COLOURS) - 1)]


@dataclass(frozen=True)
class LedPattern:
    """``on_colour`` for ``on_ms``, then ``off_colour`` for ``off_ms``, repeated."""

    on_colour: LedColour
    off_colour: LedColour
    on_ms: int
    off_ms: int

    def colour_at(self, elapsed_ms: float) -> LedColour:
        if self.off_ms == 0:
            return self.on_colour
        if self.on_ms == 0:
            return self.off_colour
        return self.on_colour if elapsed_ms % (self.on_ms + self.off_ms) < self.on_ms else self.off_colour


@dataclass(frozen=True)
class LedCommand:
    reader: int
    led: int
    #: the pattern to show; None with ``cancel_temporary`` or for a no-op
    pattern: LedPattern | None
    temporary: bool = False
    #: how long a temporary pattern lasts
    timer_ms: int = 0
    #: end a temporary pattern now and show the permanent one
    cancel_temporary: bool = False


@dataclass(frozen=True)
class BuzzerCommand:
    reader: int
    #: 0 no tone, 1 off, 2 the default tone
    tone: int
    on_ms: int
    off_ms: int
    #: how many on/off cycles; 0: until told otherwise
    repeat: int

    @property
    def sounding(self) -> bool:
        return self.tone >= 2 and self.on_ms > 0


@dataclass(frozen=True)
class OutputCommand:
    output: int
    action: OutputAction
    timer_ms: int


@dataclass(frozen=True)
class KeysetCommand:
    """A new Secure Channel base key from the panel (install mode or a key change). Never printed."""

    key: bytes = field(repr=False)


@dataclass(frozen=True)
class OtherCommand:
    """A command this reader declares no capability for (text, COMSET, manufacturer, file, status)."""

    name: str


PanelCommand = LedCommand | BuzzerCommand | OutputCommand | KeysetCommand | OtherCommand


def parse_command(command: Mapping[str, object]) -> PanelCommand:
    """A libosdp command dict as a typed command; ``OsdpCommandError`` when a field is outside the
    standard's range (colours 0-7, output codes 0-6, ...)."""
    kind = command.get("command")
    if kind == CMD_LED:
        # permanent codes: 0 leave it, 1 set (2, which some panels send, is taken as set too);
        # temporary codes: 0 leave it, 1 cancel, 2 set
        temporary = command.get("temporary") is True
        code = _int(command, "control_code", 0, 2)
        cancel = command.get("cancel_temporary") is True or (temporary and code == 1)
        pattern = None
        if (temporary and code == 2) or (not temporary and code >= 1):
            pattern = LedPattern(
                _colour(command, "on_color"),
                _colour(command, "off_color"),
                100 * _int(command, "on_count", 0, 255),
                100 * _int(command, "off_count", 0, 255),
            )
        return LedCommand(
            reader=_int(command, "reader", 0, 255),
            led=_int(command, "led_number", 0, 255),
            pattern=pattern,
            temporary=temporary and pattern is not None,
            timer_ms=100 * _int(command, "timer_count", 0, 65535) if temporary and pattern is not None else 0,
            cancel_temporary=cancel,
        )
    if kind == CMD_BUZZER:
        return BuzzerCommand(
            reader=_int(command, "reader", 0, 255),
            tone=_int(command, "control_code", 0, 255),
            on_ms=100 * _int(command, "on_count", 0, 255),
            off_ms=100 * _int(command, "off_count", 0, 255),
            repeat=_int(command, "rep_count", 0, 255),
        )
    if kind == CMD_OUTPUT:
        code = _int(command, "control_code", 0, 255)
        if code >= len(OUTPUT_ACTIONS):
            raise OsdpCommandError(f"output control code {code} is not one of the standard's 0-6")
        return OutputCommand(
            output=_int(command, "output_no", 0, 255),
            action=OUTPUT_ACTIONS[code],
            timer_ms=100 * _int(command, "timer_count", 0, 65535),
        )
    if kind == CMD_KEYSET:
        key = command.get("data")
        if _int(command, "type", 0, 255) != 1 or not isinstance(key, bytes) or len(key) != 16:
            raise OsdpCommandError("KEYSET carries no 16-byte Secure Channel base key")
        return KeysetCommand(key)
    if isinstance(kind, int) and kind in CMD_NAMES:
        return OtherCommand(CMD_NAMES[kind])
    raise OsdpCommandError("the panel sent a command libosdp does not name")


class LedProgram:
    """One LED as the panel set it: a permanent pattern, and a temporary one until its timer ends.

    ``colour(now)`` is None until the panel sends its first LED command: until then the terminal's
    own indication (steady, or blinking on an alarm) shows."""

    def __init__(self) -> None:
        self.permanent: LedPattern | None = None
        self._permanent_since = 0.0
        self.temporary: LedPattern | None = None
        self._temporary_since = 0.0
        self._temporary_until = 0.0

    def apply(self, command: LedCommand, now: float) -> None:
        if command.cancel_temporary:
            self.temporary = None
        if command.pattern is None:
            return
        if command.temporary:
            self.temporary = command.pattern
            self._temporary_since = now
            self._temporary_until = now + command.timer_ms / 1000
        else:
            self.permanent = command.pattern
            self._permanent_since = now

    def colour(self, now: float) -> LedColour | None:
        if self.temporary is not None and now < self._temporary_until:
            return self.temporary.colour_at((now - self._temporary_since) * 1000)
        self.temporary = None
        if self.permanent is None:
            return None
        return self.permanent.colour_at((now - self._permanent_since) * 1000)


class OutputProgram:
    """One output as the panel set it: a permanent state and a timed one (OSDP control codes 1-6)."""

    def __init__(self) -> None:
        self.permanent = False
        self._timed: bool | None = None
        self._until = 0.0

    def apply(self, command: OutputCommand, now: float) -> None:
        action = command.action
        timed_running = self._timed is not None and now < self._until
        if action in ("off", "on"):
            self.permanent = action == "on"
            self._timed = None
        elif action in ("off_after_timer", "on_after_timer"):
            self.permanent = action == "on_after_timer"
            if not timed_running:
                self._timed = None
        elif action in ("pulse_on", "pulse_off"):
            self._timed = action == "pulse_on"
            self._until = now + command.timer_ms / 1000

    def on(self, now: float) -> bool:
        if self._timed is not None and now < self._until:
            return self._timed
        self._timed = None
        return self.permanent

    def next_change(self, now: float) -> float | None:
        """When a timed state ends (None: nothing timed)."""
        return self._until if self._timed is not None and now < self._until else None
