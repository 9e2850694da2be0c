"""The terminal as an OSDP reader (a peripheral device, PD) on the panel's RS-485 bus.

``OsdpPeripheral`` wraps one libosdp PD context. Its thread (``osdp-pd``) sleeps in ``select`` on
the port until the panel's bytes arrive, then lets libosdp answer at once (libosdp needs a call at
least every 50 ms; the thread wakes every 20 ms when the line is quiet). The gate calls
``report_card``: the card read is queued and goes out as the reply to the panel's next poll.

What the panel sees: a reader with the identity and capabilities given here (card data as bits,
LED control, a buzzer, the outputs wired), which answers ID, capability and poll requests and, with
``secure`` (the default), nothing else before the Secure Channel is up (libosdp's ENFORCE_SECURE:
card data never crosses the bus in clear and the standard's default key SCBK-D is refused).

Card reads older than ``read_max_age_s`` that the panel has not collected are dropped rather than
delivered late (a panel back from an outage must not open the door for someone long gone).

Panel commands reach ``on_command`` as typed values (``edge.osdp.commands``) on the PD thread; the
callback must be quick and must not call back into the PD. A command outside the standard is
refused with a NAK; a KEYSET (a new Secure Channel key) is accepted only with ``on_keyset``, which
must store the key before returning; COMSET (the panel changing this reader's address or speed) is
refused: those are set in the terminal's settings.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from edge.errors import HardwareError
from edge.osdp.carddata import PanelCredential
from edge.osdp.channel import Channel
from edge.osdp.commands import KeysetCommand, OsdpCommandError, OtherCommand, PanelCommand, parse_command
from edge.osdp.lib import LOG_LEVELS, import_osdp_sys

log = logging.getLogger(__name__)

#: a PD address on the bus (0x7F is the broadcast address)
MAX_ADDRESS = 126
#: libosdp must be called at least this often
REFRESH_S = 0.02


class OsdpError(HardwareError):
    """The OSDP link cannot do what was asked (panel silent, Secure Channel down, queue full)."""


class _PdContext(Protocol):
    """The calls made on libosdp's ``osdp_sys.PeripheralDevice``."""

    def refresh(self) -> None: ...

    def submit_event(self, event: dict[str, object], /) -> bool: ...

    def flush_events(self) -> int: ...

    def is_online(self) -> bool: ...

    def is_sc_active(self) -> bool: ...

    def set_command_callback(self, callback: Callable[[dict[str, object]], tuple[int, None]], /) -> None: ...

    def set_event_completion_callback(self, callback: Callable[[dict[str, object], int], None], /) -> None: ...


@dataclass(frozen=True)
class PdIdentity:
    """What the panel's ID report shows (vendor code: the maker's 3-byte IEEE OUI)."""

    vendor_code: int = 0
    model: int = 1
    version: int = 1
    serial_number: int = 0
    firmware: int = 0x000100


@dataclass(frozen=True)
class PdStatus:
    online: bool  # the panel has polled within libosdp's 8 s
    secure: bool  # the Secure Channel is up
    install_mode: bool  # no key yet: the next session may use SCBK-D to deliver one
    commands: int  # panel commands followed
    refused: int  # panel commands refused (NAK)
    reads_pending: int
    reads_delivered: int
    reads_dropped: int  # not collected within read_max_age_s
    port_error: str | None


class OsdpPeripheral:
    """One OSDP reader (PD) on ``channel`` at ``address``."""

    def __init__(
        self,
        channel: Channel,
        *,
        address: int,
        scbk: bytes | None,
        secure: bool = True,
        reader: int = 0,
        outputs: int = 0,
        leds: int = 1,
        buzzer: bool = True,
        identity: PdIdentity | None = None,
        on_command: Callable[[PanelCommand], None] | None = None,
        on_keyset: Callable[[bytes], None] | None = None,
        read_max_age_s: float = 2.0,
        lib_log_level: Literal["emergency", "critical", "error", "warning", "debug"] = "error",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= address <= MAX_ADDRESS:
            raise OsdpError(f"OSDP address {address} is outside 0-{MAX_ADDRESS}", hint="set [door] address")
        if scbk is not None and len(scbk) != 16:
            raise OsdpError("the Secure Channel base key must be 16 bytes")
        if secure and scbk is None:
            raise OsdpError(
                "Secure Channel is required but no key is installed",
                hint="edge-provision osdp-key (or set [door] secure = false to opt into plain mode)",
            )
        osdp_sys = import_osdp_sys()
        osdp_sys.set_loglevel(LOG_LEVELS[lib_log_level])
        self.channel = channel
        self.address = address
        self.secure = secure
        self.reader = reader
        self.on_command = on_command
        self.on_keyset = on_keyset
        self.read_max_age_s = read_max_age_s
        self._clock = clock
        self._sys = osdp_sys
        ident = identity or PdIdentity()
        caps: list[dict[str, int]] = [
            {"function_code": osdp_sys.CAP_CARD_DATA_FORMAT, "compliance_level": 1, "num_items": 0},
        ]
        if leds:
            caps.append({"function_code": osdp_sys.CAP_READER_LED_CONTROL, "compliance_level": 4, "num_items": leds})
        if buzzer:
            caps.append({"function_code": osdp_sys.CAP_READER_AUDIBLE_OUTPUT, "compliance_level": 2, "num_items": 1})
        if outputs:
            caps.append({"function_code": osdp_sys.CAP_OUTPUT_CONTROL, "compliance_level": 4, "num_items": outputs})
        info: dict[str, object] = {
            "name": f"gate-edge-{address}",
            "address": address,
            "flags": osdp_sys.FLAG_ENFORCE_SECURE if secure else 0,
            "scbk": scbk,
            "channel": channel,
            "version": ident.version,
            "model": ident.model,
            "vendor_code": ident.vendor_code,
            "serial_number": ident.serial_number,
            "firmware_version": ident.firmware,
        }
        try:
            ctx = osdp_sys.PeripheralDevice(info, capabilities=caps)
        except Exception as exc:  # libosdp raises bare Exception for a setup it refuses
            raise OsdpError(f"libosdp refused the reader's setup: {exc}") from None
        self._ctx = cast(_PdContext, ctx)
        self._ctx.set_command_callback(self._command)
        self._ctx.set_event_completion_callback(self._delivered)
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._install_mode = scbk is None
        self._commands = 0
        self._refused = 0
        self._pending = 0
        self._delivered_count = 0
        self._dropped = 0
        self._last_report: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        #: monotonic time of each delivered read's reply, newest last (the benchmark reads it)
        self.delivery_times: list[float] = []

    # ----------------------------------------------------------------- the panel's commands

    def _command(self, raw: dict[str, object]) -> tuple[int, None]:
        """libosdp's command callback: 0 follows the command, -1 refuses it (NAK). Never raises."""
        code = -1
        try:
            code = self._follow(parse_command(raw))
        except OsdpCommandError as exc:
            log.warning("OSDP: refused a panel command: %s", exc)
        except Exception as exc:  # a handler's bug must not reach libosdp, which cannot take an exception
            log.error("OSDP: panel command handler failed: %s", exc.__class__.__name__)
        if code == 0:
            self._commands += 1
        else:
            self._refused += 1
        # a tuple built here, never a constant: see edge.osdp.lib on libosdp's reference counting
        return (code, None)

    def _follow(self, command: PanelCommand) -> int:
        if isinstance(command, KeysetCommand):
            if self.on_keyset is None:
                log.warning("OSDP: the panel sent a new Secure Channel key; refused (no key store configured)")
                return -1
            self.on_keyset(command.key)  # stores it; libosdp switches to it once the ACK is sent
            self._install_mode = False
            log.info("OSDP: the panel installed a new Secure Channel key")
            return 0
        if isinstance(command, OtherCommand):
            if command.name == "comset":
                log.warning(
                    "OSDP: the panel asked to change this reader's address or speed; refused: set [door] address/baud"
                )
            else:
                log.info("OSDP: refused the panel's %s command (not supported by this reader)", command.name)
            return -1
        if self.on_command is not None:
            self.on_command(command)
        return 0

    def _delivered(self, _event: dict[str, object], status: int) -> None:
        """libosdp's event completion callback (on the PD thread, inside ``refresh``)."""
        with self._done:
            self._pending = max(0, self._pending - 1)
            if status == getattr(self._sys, "COMPLETION_OK", 0):
                self._delivered_count += 1
                self.delivery_times.append(self._clock())
                del self.delivery_times[:-1000]
            else:
                self._dropped += 1
            self._done.notify_all()

    # ----------------------------------------------------------------- the gate's side

    def report_card(self, credential: PanelCredential) -> None:
        """Queue a card read for the panel's next poll; ``OsdpError`` when the panel cannot get it."""
        with self._lock:
            if not self._ctx.is_online():
                raise OsdpError(
                    f"the panel has not polled OSDP address {self.address} recently: the card read cannot be reported",
                    hint="check the RS-485 wiring (A/B, ground), [door] baud and address, and the panel's reader setup",
                )
            if self.secure and not self._ctx.is_sc_active():
                raise OsdpError(
                    "the Secure Channel to the panel is down: the card read is not sent in clear",
                    hint="check the installed key (edge-provision osdp-key --status) against the panel's",
                )
            event: dict[str, object] = {
                "event": self._sys.EVENT_CARDREAD,
                "reader_no": self.reader,
                "format": self._sys.CARD_FMT_RAW_UNSPECIFIED
                if credential.format == "raw"
                else self._sys.CARD_FMT_RAW_WIEGAND,
                "direction": 0,
                "length": len(credential.bits),
                "data": credential.packed(),
            }
            try:
                queued = self._ctx.submit_event(event)
            except Exception as exc:
                raise OsdpError(f"libosdp refused the card read: {exc.__class__.__name__}") from None
            if not queued:
                raise OsdpError(
                    "the reader's queue of card reads is full: the panel is not collecting them",
                    hint="check that the panel polls this reader (its event log, the bus wiring)",
                )
            self._pending += 1
            self._last_report = self._clock()

    def wait_delivered(self, count: int, timeout_s: float) -> bool:
        """True once ``count`` card reads have gone out in replies to the panel."""
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self._delivered_count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            return True

    def status(self) -> PdStatus:
        with self._lock:
            return PdStatus(
                online=bool(self._ctx.is_online()),
                secure=bool(self._ctx.is_sc_active()),
                install_mode=self._install_mode,
                commands=self._commands,
                refused=self._refused,
                reads_pending=self._pending,
                reads_delivered=self._delivered_count,
                reads_dropped=self._dropped,
                port_error=getattr(self.channel, "error", None),
            )

    def wait(self, *, secure: bool, timeout_s: float) -> PdStatus:
        """Wait until the panel polls (and, with ``secure``, the Secure Channel is up) or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.status()
            if state.online and (state.secure or not secure):
                return state
            if time.monotonic() >= deadline:
                return state
            if self._thread is None:
                self.step()
                self._idle(REFRESH_S)
            else:
                time.sleep(0.02)

    # ----------------------------------------------------------------- running

    def step(self) -> None:
        """One pass of libosdp: read what arrived, answer it, drop reads that waited too long."""
        with self._lock:
            self._ctx.refresh()
            if (
                self._pending
                and self._last_report is not None
                and self._clock() - self._last_report > self.read_max_age_s
            ):
                dropped = int(self._ctx.flush_events())  # each one also reaches _delivered as flushed
                if dropped:
                    log.warning("OSDP: dropped %d card read(s) the panel did not collect in time", dropped)
                self._pending = 0

    def _idle(self, timeout_s: float) -> None:
        waiting = getattr(self.channel, "waiting", None)
        if callable(waiting) and waiting():
            timeout_s = min(timeout_s, 0.002)  # the rest of a frame is on its way
        fd = getattr(self.channel, "fileno", lambda: None)()
        if fd is None:
            time.sleep(min(timeout_s, 0.005))
            return
        with contextlib.suppress(OSError, ValueError):
            select.select([fd], [], [], timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self._failures = 0
            except Exception as exc:  # libosdp or the port; logged once a second at most, then retried
                self._failures += 1
                if self._failures == 1 or self._failures % 50 == 0:
                    log.error("OSDP: the reader's loop failed (%s); retrying", exc.__class__.__name__)
                time.sleep(REFRESH_S)
            self._idle(REFRESH_S)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="osdp-pd", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        with self._lock:
            with contextlib.suppress(Exception):
                self._ctx.flush_events()
            close = getattr(self.channel, "close", None)
            if callable(close):
                close()
