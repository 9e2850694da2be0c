"""The serial line libosdp reads and writes: a port opened by pyserial URL.

``/dev/ttyUSB0`` (a USB-RS485 adapter), ``/dev/ttyAMA0`` with a transceiver whose DE/RE follow RTS
(``rs485_rts``), a simulator's pty, or ``loop://`` all work unchanged. libosdp calls ``read``,
``write`` and ``flush`` from C: none of them may raise (a Python exception inside the C library's
callback would surface later as an unrelated ``SystemError``), so a failing port is counted and
reported through ``error`` instead, and the PD's status shows it.

libosdp must be handed whole frames. Its wheels are built with ``OPT_OSDP_RX_ZERO_COPY``, and in
that build both the PD and the CP discard a partly received frame after each pass (libosdp 3.2.9,
``osdp_pd_update`` and the CP's reply wait call ``osdp_phy_release_packet`` even while waiting for
the rest): a command that arrives in two pieces, as any command does at 9600 baud through a UART
or a USB adapter, would be lost. ``FrameGate`` holds received bytes back until a frame is complete.
It reads two things only, the start byte and the length field, and leaves every check (address,
CRC, sequence, Secure Channel) to libosdp; bytes that cannot start or finish a frame are released
at once, or after ``stale_s`` of silence, so libosdp sees and drops them as it would on the wire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from edge.errors import HardwareError

log = logging.getLogger(__name__)


class Channel(Protocol):
    """What libosdp's PD and CP need of a line (the names are libosdp's)."""

    id: int

    def read(self, max_bytes: int) -> bytes: ...

    def write(self, data: bytes) -> int: ...

    def flush(self) -> None: ...


#: start of message, the byte before it on the wire (optional), and libosdp's frame buffer size
SOM = 0x53
MARK = 0xFF
MAX_FRAME = 256
MIN_FRAME = 6  # header (5) and a command or reply code


class FrameGate:
    """Received bytes in, whole OSDP frames (and the noise between them) out. Pure."""

    def __init__(self, *, stale_s: float = 0.05, max_frame: int = MAX_FRAME) -> None:
        self.stale_s = stale_s
        self.max_frame = max_frame
        self._held = bytearray()  # not yet released
        self._ready = bytearray()  # released, not yet read
        self._last = 0.0

    def feed(self, data: bytes, now: float) -> None:
        if data:
            self._held += data
            self._last = now

    def held(self) -> int:
        return len(self._held)

    def _release(self, count: int) -> None:
        self._ready += self._held[:count]
        del self._held[:count]

    def _settle(self, now: float) -> None:
        while self._held:
            start = self._held.find(SOM)
            if start < 0:
                self._release(len(self._held))  # no frame starts here: noise
                return
            lead = start - 1 if start > 0 and self._held[start - 1] == MARK else start
            if lead:
                self._release(lead)  # bytes before the (marked) start: noise
                continue
            begin = start
            if len(self._held) < begin + 4:
                break
            length = self._held[begin + 2] | (self._held[begin + 3] << 8)
            if not MIN_FRAME <= length <= self.max_frame:
                self._release(begin + 1)  # a start byte with an impossible length: noise
                continue
            if len(self._held) < begin + length:
                break
            self._release(begin + length)
        if self._held and now - self._last >= self.stale_s:
            self._release(len(self._held))  # the rest of this frame never came

    def take(self, max_bytes: int, now: float) -> bytes:
        self._settle(now)
        out = bytes(self._ready[: max(0, max_bytes)])
        del self._ready[: len(out)]
        return out

    def clear(self) -> None:
        self._held.clear()
        self._ready.clear()


class SerialLike(Protocol):
    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


class SerialChannel:
    """Implements ``Channel`` over a pyserial port in non-blocking mode."""

    id = 0

    def __init__(self, port: SerialLike, *, name: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.name = name
        self.gate = FrameGate()
        self._clock = clock
        self.errors = 0
        self.error: str | None = None  # the last failure, for status and selftest
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, baud: int, *, rs485_rts: bool = False) -> SerialChannel:
        """Open ``url`` at ``baud`` (8N1, as OSDP requires) or raise a ``HardwareError`` that says what to check."""
        import serial

        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0, write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise HardwareError(
                f"cannot open the OSDP port {url}: {getattr(exc, 'strerror', None) or exc}",
                hint="check [door] port (ls /dev/serial/by-id/), that no other program holds it, "
                "and that the service user is in the dialout group",
            ) from exc
        if rs485_rts:
            try:
                from serial.rs485 import RS485Settings

                port.rs485_mode = RS485Settings(rts_level_for_tx=True, rts_level_for_rx=False)
            except (serial.SerialException, OSError, ValueError, AttributeError) as exc:
                port.close()
                raise HardwareError(
                    f"the OSDP port {url} does not take the kernel's RS-485 mode",
                    hint="set [door] rs485_rts = false for a USB-RS485 adapter that switches direction itself",
                ) from exc
        return cls(port, name=url)

    def fileno(self) -> int | None:
        """The port's descriptor for ``select`` (None for URLs without one, such as ``loop://``)."""
        get = getattr(self.port, "fileno", None)
        if get is None:
            return None
        try:
            fd = get()
        except (OSError, ValueError, AttributeError, NotImplementedError):
            return None
        return fd if isinstance(fd, int) else None

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        text = f"{what} failed: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"
        if text != self.error:
            log.warning("OSDP port %s: %s", self.name, text)
        self.error = text

    def read(self, max_bytes: int) -> bytes:
        try:
            with self._lock:
                data = self.port.read(4096)
        except Exception as exc:  # never into libosdp: see the module docstring
            self._failed("read", exc)
            data = b""
        now = self._clock()
        self.gate.feed(bytes(data), now)
        return self.gate.take(max_bytes, now)

    def waiting(self) -> bool:
        """Bytes of an unfinished frame are held (the PD's loop then wakes sooner)."""
        return self.gate.held() > 0

    def write(self, data: bytes) -> int:
        try:
            with self._lock:
                sent = self.port.write(data)
        except Exception as exc:
            self._failed("write", exc)
            return 0
        self.error = None
        return len(data) if sent is None else int(sent)

    def flush(self) -> None:
        """libosdp's flush: drop stale received bytes before it sends."""
        self.gate.clear()
        try:
            with self._lock:
                self.port.reset_input_buffer()
        except Exception as exc:
            self._failed("flush", exc)

    def close(self) -> None:
        try:
            with self._lock:
                self.port.close()
        except Exception as exc:
            self._failed("close", exc)
