"""Credential readers: card, PIN and QR inputs behind one small Protocol, with a simulator beside them.

* ``SerialCredentialReader``: a card reader or QR scanner that sends each value as a line of ASCII
  (most 125 kHz/13.56 MHz readers in "keyboard-wedge over UART" mode, RS-232 and USB-CDC QR
  scanners). Opened by pyserial URL, so ``/dev/ttyUSB0``, a pty and ``loop://`` all work.
* ``WiegandReader`` (``wiegand_reader.py``): D0/D1 card readers and keypads on two GPIO lines.
* ``SimCredentialReader``: fed programmatically (``feed``) or through a control FIFO where each line
  is ``kind:value`` (``echo card:0004123456 > /run/gate-edge/credentials``). No threads: ``read``
  waits on the FIFO and a self-pipe with ``select``.

Credential values are secrets: they never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import stat
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge.credentials.hashing import KINDS, CredentialFormatError, normalise
from edge.errors import HardwareError

if TYPE_CHECKING:
    from edge.config.schema import GpioOffer

log = logging.getLogger(__name__)

MAX_LINE = 600
_FRAMING = b"\x02\x03"  # STX/ETX some RFID readers put around the number


@dataclass(frozen=True)
class Credential:
    kind: str
    value: str = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, value=<redacted>, source={self.source!r})"


class CredentialReader(Protocol):
    def read(self, timeout_s: float) -> Credential | None:
        """The next credential presented within ``timeout_s``, or None."""
        ...

    def close(self) -> None: ...


def parse_control_line(line: str) -> Credential | None:
    """``kind:value`` from the simulator's control FIFO; None (logged) when malformed."""
    kind, sep, value = line.strip().partition(":")
    if not sep or kind not in KINDS:
        log.warning("simulated credential line ignored: expected kind:value with kind card, pin or qr")
        return None
    try:
        normalise(kind, value)
    except CredentialFormatError as exc:
        log.warning("simulated credential line ignored: %s", exc)
        return None
    return Credential(kind, value.strip(), "sim")


def _close_fds(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


class WakePipe:
    """A self-pipe: ``wake`` from any thread ends a ``wait`` early."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._w, b"x")

    def wait(self, fds: list[int], timeout_s: float) -> None:
        """Until ``timeout_s`` passes, one of ``fds`` is readable, or ``wake`` is called."""
        ready, _, _ = select.select([self._r, *fds], [], [], max(0.0, timeout_s))
        if self._r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._r, 4096)

    def close(self) -> None:
        _close_fds(self._r, self._w)
        self._r = self._w = -1


class ControlFifo:
    """A simulator's control FIFO of ``kind:value`` lines (created 0600 if missing)."""

    def __init__(self, path: Path) -> None:
        if path.exists() and not stat.S_ISFIFO(path.stat().st_mode):
            raise HardwareError(f"{path} exists and is not a FIFO", hint="remove it or choose another path")
        if not path.exists():
            os.mkfifo(path, 0o600)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # hold a writer open ourselves so the FIFO never reads as end-of-file between writers
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buffer = b""

    def credentials(self) -> list[Credential]:
        """The well-formed lines written since the last call (malformed ones are logged)."""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        parsed = (parse_control_line(raw.decode("utf-8", "replace")) for raw in lines)
        return [c for c in parsed if c is not None]

    def close(self) -> None:
        _close_fds(self.fd, self._keep)
        self.fd = self._keep = -1


class SimCredentialReader:
    """A simulated reader: ``feed`` from code, or lines written to a control FIFO."""

    def __init__(self, control: Path | None = None) -> None:
        self._queue: deque[Credential] = deque()
        self._wake = WakePipe()
        self.control = control
        self._fifo = ControlFifo(control) if control is not None else None

    def feed(self, credential: Credential) -> None:
        self._queue.append(credential)
        self._wake.wake()

    def read(self, timeout_s: float) -> Credential | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._fifo is not None:
                self._queue.extend(self._fifo.credentials())
            if self._queue:
                return self._queue.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._wake.wait([self._fifo.fd] if self._fifo is not None else [], remaining)

    def close(self) -> None:
        if self._fifo is not None:
            self._fifo.close()
            self._fifo = None
        self._wake.close()

    def __enter__(self) -> SimCredentialReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialCredentialReader:
    """A line-oriented card reader or QR scanner on a serial port (pyserial URL)."""

    def __init__(self, url: str, *, kind: str = "card", baudrate: int = 9600, port: Any = None) -> None:
        if kind not in KINDS:
            raise HardwareError(f"credential reader kind {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.url = url
        if port is None:
            import serial

            try:
                port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
            except (serial.SerialException, ValueError) as exc:
                raise HardwareError(
                    f"cannot open the {kind} reader at {url} ({exc.__class__.__name__})",
                    hint="check the reader's cable and the port in the config ([credentials])",
                ) from None
        self._port = port
        self._buffer = b""

    def _take_line(self) -> bytes | None:
        self._buffer = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # an empty line is skipped
        if b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                log.warning("%s reader sent an over-long line; discarded", self.kind)
                self._buffer = b""
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def read(self, timeout_s: float) -> Credential | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            while (line := self._take_line()) is not None:
                text = line.strip(_FRAMING + b" \t").decode("ascii", "replace")
                if not text:
                    continue
                try:
                    normalise(self.kind, text)
                except CredentialFormatError as exc:
                    log.warning("%s reader sent unreadable data: %s", self.kind, exc)
                    continue
                return Credential(self.kind, text, self.url)
            if time.monotonic() >= deadline:
                return None
            try:
                waiting = int(getattr(self._port, "in_waiting", 0))
                chunk = self._port.read(max(1, waiting))
            except OSError as exc:
                raise HardwareError(
                    f"the {self.kind} reader at {self.url} failed ({exc.__class__.__name__})",
                    hint="check the reader's cable; the agent reopens it on restart",
                ) from None
            if chunk:
                self._buffer += bytes(chunk)

    def close(self) -> None:
        self._port.close()


def open_card_reader(
    backend: str,
    *,
    url: str | None = None,
    baud: int = 9600,
    control: Path | None = None,
    gpio: GpioOffer | None = None,
    wiegand_formats: Sequence[str] = ("H10301", "W34"),
    wiegand_value: str = "number",
) -> CredentialReader | None:
    """The card reader the config's ``[credentials] card`` names; None for ``none``.

    ``wiegand`` reads D0/D1 on the profile's GPIO lines; on a simulated GPIO profile it is the
    simulated reader on the same codec, fed through ``control`` like ``sim``."""
    if backend == "none":
        return None
    if backend == "sim":
        return SimCredentialReader(control)
    if backend == "serial":
        if not url:
            raise HardwareError("credentials.card is 'serial' but no reader port is given", hint="set credentials.port")
        return SerialCredentialReader(url, kind="card", baudrate=baud)
    if backend == "wiegand":
        from edge.credentials.wiegand import VALUES
        from edge.credentials.wiegand_reader import EdgeSource, GpiodEdgeSource, SimWiegandSource, WiegandReader

        if wiegand_value not in VALUES:
            raise HardwareError(f"wiegand_value {wiegand_value!r} is not one of {', '.join(VALUES)}")
        if gpio is None:
            raise HardwareError("credentials.card is 'wiegand' but no GPIO profile is given")
        source: EdgeSource
        if gpio.simulated or gpio.chip == "sim":
            source = SimWiegandSource(format=wiegand_formats[0], control=control)
        elif gpio.wiegand_d0 is None or gpio.wiegand_d1 is None:
            raise HardwareError(
                "credentials.card is 'wiegand' but the profile names no D0/D1 lines",
                hint="set gpio.wiegand_d0 and gpio.wiegand_d1 in the device profile",
            )
        else:
            source = GpiodEdgeSource(gpio.chip, gpio.wiegand_d0, gpio.wiegand_d1)
        return WiegandReader(source, formats=wiegand_formats, value=wiegand_value)  # type: ignore[arg-type]
    raise HardwareError(f"card reader backend {backend!r} is not known", hint="use none, sim, serial or wiegand")
