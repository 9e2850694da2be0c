"""``SerialCredentialReader``: a card reader or QR scanner that sends each value as a line of ASCII
(most 125 kHz/13.56 MHz readers in "keyboard-wedge over UART" mode, RS-232 and USB-CDC QR
scanners). Opened by pyserial URL, so ``/dev/ttyUSB0``, a pty and ``loop://`` all work.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edge.credentials.base import Credential
from edge.credentials.hashing import KINDS, CredentialFormatError, normalise
from edge.credentials.plumbing import MAX_LINE
from edge.errors import HardwareError

log = logging.getLogger(__name__)

_FRAMING = b"\x02\x03"  # STX/ETX some RFID readers put around the number


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
