"""A simulated access-control panel (an OSDP control panel, CP) for tests, the demo and the benchmark.

``SimPanel`` is libosdp in CP mode on one end of a real pty (``PtyBus``); the terminal's reader opens
the other end by path, as it would open ``/dev/ttyUSB0``. The panel polls, reads the reader's ID
and capabilities, sets up the Secure Channel with its copy of the key, receives card reads and
decides like a panel with a card database: a number it grants gets a green LED, one beep and its
output 0 (the door strike) pulsed; any other a red LED and three beeps. Tests drive LED, buzzer,
output and KEYSET commands directly.

A pty moves bytes at once; ``WireChannel`` adds the time they take on an RS-485 line at the
configured baud rate (10 bits a byte, one direction at a time), so latencies measured here include
the wire. ``edge.testing.osdp_peer`` plays the panel with the independent ``osdp`` package instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pty
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, cast

from edge.errors import HardwareError
from edge.osdp.carddata import PanelFormat, read_back
from edge.osdp.channel import FrameGate
from edge.osdp.lib import LOG_LEVELS, import_osdp_sys

log = logging.getLogger(__name__)


class PtyBus:
    """A pty standing in for the RS-485 bus: ``path`` for the reader, ``fd`` for the panel."""

    def __init__(self) -> None:
        self.fd, self._slave = pty.openpty()
        tty.setraw(self.fd)
        tty.setraw(self._slave)
        os.set_blocking(self.fd, False)
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        for fd in (self.fd, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WireChannel:
    """libosdp's channel on the panel's end of the pty, with the line's timing modelled.

    ``write`` returns when the last bit would have left at ``baud``; received bytes are released
    only when they would have arrived (each byte 10 bit times after the one before, none before
    the panel's own transmission ended: RS-485 is half duplex). ``baud = 0`` models nothing."""

    id = 0

    def __init__(self, fd: int, baud: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fd = fd
        self.byte_s = 10.0 / baud if baud else 0.0
        self._clock = clock
        self._line_free = 0.0
        self._held: deque[tuple[float, int]] = deque()  # (arrival time, byte)
        #: (start, end) of each transmission the panel made, newest last
        self.sent: deque[tuple[float, float]] = deque(maxlen=2000)
        self.received_bytes = 0
        self.gate = FrameGate()  # libosdp's CP, too, must get whole frames (see edge.osdp.channel)

    def _pull(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the reader's end is closed: a silent line
        now = self._clock()
        for byte in data:
            self._line_free = max(now, self._line_free) + self.byte_s
            self._held.append((self._line_free, byte))
        self.received_bytes += len(data)

    def next_arrival(self) -> float | None:
        return self._held[0][0] if self._held else None

    def read(self, max_bytes: int) -> bytes:
        self._pull()
        now = self._clock()
        arrived = bytearray()
        while self._held and self._held[0][0] <= now:
            arrived.append(self._held.popleft()[1])
        self.gate.feed(bytes(arrived), now)
        return self.gate.take(max_bytes, now)

    def write(self, data: bytes) -> int:
        start = max(self._clock(), self._line_free)
        try:
            sent = os.write(self.fd, data)
        except OSError:
            return 0
        self._line_free = start + sent * self.byte_s
        self.sent.append((start, self._line_free))
        wait = self._line_free - self._clock()
        if wait > 0:
            time.sleep(wait)
        return sent

    def flush(self) -> None:
        self._pull()
        self._held.clear()
        self.gate.clear()


class _CpContext(Protocol):
    def refresh(self) -> None: ...

    def status(self) -> int: ...

    def sc_status(self) -> int: ...

    def submit_command(self, pd: int, command: dict[str, object], /) -> bool: ...

    def get_pd_id(self, pd: int, /) -> dict[str, int] | None: ...

    def check_capability(self, pd: int, function_code: int, /) -> tuple[int, int]: ...

    def set_event_callback(self, callback: Callable[[int, dict[str, object]], int], /) -> None: ...


@dataclass(frozen=True)
class CardSeen:
    """A card read as the panel received it."""

    at: float
    format_code: int  # 0 raw, 1 Wiegand (libosdp's CARD_FMT_*)
    bit_count: int
    data: bytes = field(repr=False)


class SimPanel:
    """A control panel with one reader at ``address``; grants the card numbers in ``granted``.

    ``scbk`` None: a panel that never sets up the Secure Channel. With a key but ``secure`` false the
    panel does what libosdp's CP does for a reader in install mode: its key fails, a session under
    the default key SCBK-D succeeds, and it sends the reader its key (KEYSET), then starts again.
    ``card_format`` is how the panel reads card data (a Wiegand format with its parity checked, or
    ``raw``); the number it looks up is the data bits between the parity bits (``raw``: all)."""

    def __init__(
        self,
        channel: WireChannel,
        *,
        address: int = 0,
        scbk: bytes | None,
        secure: bool = True,
        card_format: PanelFormat = "H10301",
        granted: Iterable[int] = (),
        grant_pulse_s: float = 3.0,
        react: bool = True,
        lib_log_level: str = "critical",
    ) -> None:
        osdp_sys = import_osdp_sys("the simulated OSDP panel")
        osdp_sys.set_loglevel(LOG_LEVELS[lib_log_level])
        self._sys = osdp_sys
        self.channel = channel
        self.address = address
        self.card_format = card_format
        self.granted = set(granted)
        self.grant_pulse_s = grant_pulse_s
        self.react = react  # False: record reads, answer nothing (the benchmark's idle bus)
        flags = osdp_sys.FLAG_ENFORCE_SECURE if secure else 0
        info = {
            "name": "sim-panel",
            "address": address,
            "flags": flags,
            "scbk": scbk,
            "channel": channel,
            "version": 0,
            "model": 0,
            "vendor_code": 0,
            "serial_number": 0,
            "firmware_version": 0,
        }
        try:
            self._ctx = cast(_CpContext, osdp_sys.ControlPanel([info]))
        except Exception as exc:
            raise HardwareError(f"libosdp refused the simulated panel's setup: {exc}") from None
        self._ctx.set_event_callback(self._event)
        self._lock = threading.RLock()
        self._seen = threading.Condition(self._lock)
        self.reads: list[CardSeen] = []
        #: (number, granted) for each card read, in order; None for a read that failed its parity check
        self.decisions: list[tuple[int | None, bool]] = []
        self._todo: deque[dict[str, object]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- events from the reader

    def _event(self, _pd: int, event: dict[str, object]) -> int:
        try:
            if event.get("event") == self._sys.EVENT_CARDREAD:
                self._card(event)
        except Exception as exc:  # a bad read must not stop the simulated panel
            log.warning("simulated panel: card read not understood (%s)", exc.__class__.__name__)
        return 0

    def _card(self, event: dict[str, object]) -> None:
        data = event.get("data")
        length = event.get("length")
        fmt = event.get("format")
        if not isinstance(data, bytes) or not isinstance(length, int) or not isinstance(fmt, int):
            return
        seen = CardSeen(time.monotonic(), fmt, length, data)
        try:
            number: int | None = read_back(self.card_format, data, length).number()
        except HardwareError:
            number = None
        except ValueError:
            number = None
        granted = number is not None and number in self.granted
        with self._seen:
            self.reads.append(seen)
            self.decisions.append((number, granted))
            self._seen.notify_all()
        if not self.react:
            return
        if granted:
            self._todo.extend(
                [
                    self.led_command(on_colour=self._sys.LED_COLOR_GREEN, temporary_s=2.0),
                    self.buzzer_command(beeps=1),
                    self.output_command(0, control_code=5, timer_s=self.grant_pulse_s),
                ]
            )
        else:
            self._todo.extend(
                [self.led_command(on_colour=self._sys.LED_COLOR_RED, temporary_s=2.0), self.buzzer_command(beeps=3)]
            )

    # ----------------------------------------------------------------- commands to the reader

    def led_command(
        self,
        *,
        on_colour: int,
        off_colour: int = 0,
        on_ms: int = 500,
        off_ms: int = 0,
        temporary_s: float | None = None,
        led: int = 0,
    ) -> dict[str, object]:
        command: dict[str, object] = {
            "command": self._sys.CMD_LED,
            "reader": 0,
            "led_number": led,
            "control_code": 2 if temporary_s is not None else 1,
            "on_color": on_colour,
            "off_color": off_colour,
            "on_count": on_ms // 100,
            "off_count": off_ms // 100,
            "temporary": temporary_s is not None,
        }
        if temporary_s is not None:
            command["timer_count"] = round(temporary_s * 10)
        return command

    def buzzer_command(self, *, beeps: int, on_ms: int = 200, off_ms: int = 200) -> dict[str, object]:
        return {
            "command": self._sys.CMD_BUZZER,
            "reader": 0,
            "control_code": 2,
            "on_count": on_ms // 100,
            "off_count": off_ms // 100,
            "rep_count": beeps,
        }

    def output_command(self, output: int, *, control_code: int, timer_s: float = 0.0) -> dict[str, object]:
        return {
            "command": self._sys.CMD_OUTPUT,
            "output_no": output,
            "control_code": control_code,
            "timer_count": round(timer_s * 10),
        }

    def keyset_command(self, key: bytes) -> dict[str, object]:
        return {"command": self._sys.CMD_KEYSET, "type": 1, "data": key}

    def send(self, command: dict[str, object]) -> None:
        """Queue a command for the reader (sent between polls)."""
        self._todo.append(command)

    # ----------------------------------------------------------------- state

    def online(self) -> bool:
        with self._lock:
            return bool(self._ctx.status() & 1)

    def secure(self) -> bool:
        with self._lock:
            return bool(self._ctx.sc_status() & 1)

    def wait_until(self, test: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not test():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def wait_reads(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._seen:
            while len(self.reads) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._seen.wait(left)
        return True

    def pd_id(self) -> dict[str, int] | None:
        with self._lock:
            return self._ctx.get_pd_id(0)

    def capability(self, function_code: int) -> tuple[int, int]:
        """(compliance level, number of items) the reader declared for a capability."""
        with self._lock:
            return self._ctx.check_capability(0, function_code)

    def poll_interval_s(self) -> float | None:
        """The median time between the starts of the panel's transmissions (mostly polls)."""
        starts = [s for s, _ in list(self.channel.sent)[-200:]]
        gaps = sorted(b - a for a, b in itertools.pairwise(starts))
        return gaps[len(gaps) // 2] if gaps else None

    # ----------------------------------------------------------------- running

    def step(self) -> None:
        with self._lock:
            self._ctx.refresh()
            while self._todo:
                if not self._ctx.submit_command(0, self._todo[0]):
                    break  # libosdp's command queue is full (or the reader offline): next pass
                self._todo.popleft()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:
                log.error("simulated panel: %s", exc.__class__.__name__)
                time.sleep(0.05)
            wait = 0.005
            arrival = self.channel.next_arrival()
            if arrival is not None:
                wait = max(0.0, min(wait, arrival - time.monotonic()))
            with contextlib.suppress(OSError, ValueError):
                select.select([self.channel.fd], [], [], wait)

    def start(self) -> SimPanel:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="osdp-sim-panel", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
