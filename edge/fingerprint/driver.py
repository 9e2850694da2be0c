"""Host driver for EF01 fingerprint modules over pyserial.

Ports open by URL with ``serial.serial_for_url``: ``/dev/ttyUSB0``, ``loop://``, ``spy:///dev/ttyS0``
and the simulator's pty all work. Every call has a deadline. Failures raise the typed errors of
``edge.fingerprint.errors`` carrying the last frames exchanged; idempotent commands are retried once
after a resync (input flushed, parser reset), and a port that failed is reopened and the password
re-verified on the next call, so an unplugged adapter that comes back needs no agent restart.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from edge.fingerprint import protocol as p
from edge.fingerprint.errors import (
    FingerprintError,
    LibraryFullError,
    SensorChecksumError,
    SensorDisconnectedError,
    SensorGarbledError,
    SensorProtocolError,
    SensorRefusedError,
    SensorTimeoutError,
    WrongPasswordError,
)

log = logging.getLogger(__name__)

RING = 12


def _port_errors() -> tuple[type[BaseException], ...]:
    """What a failing port raises: pyserial's exception, OSError, and termios.error (tcdrain on a
    pty whose other end vanished raises it, and it is not an OSError)."""
    import serial

    errors: list[type[BaseException]] = [serial.SerialException, OSError]
    try:
        import termios

        errors.append(termios.error)
    except ImportError:  # not POSIX
        pass
    return tuple(errors)


def _port_errors_and_type() -> tuple[type[BaseException], ...]:
    # pyserial raises TypeError when the fd was closed under it by another thread.
    return (*_port_errors(), TypeError)


_SECRET_INS = {p.Ins.VFY_PWD, p.Ins.SET_PWD}


@dataclass(frozen=True)
class LedPattern:
    mode: p.LedMode
    colour: p.LedColour
    speed: int = 0
    cycles: int = 0


#: An access panel's LED colours (OSDP) on the R503 ring: amber shows as yellow, magenta as purple.
PANEL_COLOURS = {
    "red": p.LedColour.RED,
    "green": p.LedColour.GREEN,
    "amber": p.LedColour.YELLOW,
    "blue": p.LedColour.BLUE,
    "magenta": p.LedColour.PURPLE,
    "cyan": p.LedColour.CYAN,
    "white": p.LedColour.WHITE,
}

#: Named LED states for the R503 ring.
LED = {
    "ready": LedPattern(p.LedMode.BREATHING, p.LedColour.BLUE, speed=100),
    "scanning": LedPattern(p.LedMode.FLASHING, p.LedColour.PURPLE, speed=30),
    "success": LedPattern(p.LedMode.ON, p.LedColour.GREEN),
    "failure": LedPattern(p.LedMode.FLASHING, p.LedColour.RED, speed=40, cycles=3),
    "off": LedPattern(p.LedMode.OFF, p.LedColour.BLUE),
}


def _describe(direction: str, frame: p.Frame) -> str:
    if frame.pid == p.Pid.COMMAND and frame.content and frame.content[0] in _SECRET_INS:
        return f"{direction} Frame(pid=0x01, addr=0x{frame.address:08X}, content={frame.content[0]:02x}********)"
    return f"{direction} {frame!r}"


class FingerprintDriver:
    """One EF01 module on one serial port. Not for concurrent use from several threads at once
    (calls are serialised by a lock)."""

    def __init__(
        self,
        port: Any,
        *,
        url: str,
        baud: int = 57600,
        address: int = p.DEFAULT_ADDRESS,
        password: int = p.DEFAULT_PASSWORD,
        timeout_s: float = 2.0,
        retries: int = 1,
    ) -> None:
        self._port: Any | None = port
        self.url = url
        self.baud = baud
        self.address = address
        self._password = password
        self.timeout_s = timeout_s
        self.retries = retries
        self.parser = p.StreamParser(address)
        self.frames: collections.deque[str] = collections.deque(maxlen=RING)
        self._lock = threading.RLock()
        self.params: p.SystemParameters | None = None
        self.packet_size = 128
        self.reopens = 0
        self._queue: collections.deque[p.Frame] = collections.deque()

    # -- opening and closing ---------------------------------------------------------------------

    @staticmethod
    def _open_port(url: str, baud: int) -> Any:
        import serial

        try:
            return serial.serial_for_url(url, baudrate=baud, timeout=0.05, write_timeout=2.0, exclusive=None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SensorDisconnectedError(f"cannot open fingerprint sensor port {url}: {exc}", port=url) from exc

    @classmethod
    def open(
        cls,
        url: str,
        *,
        baud: int = 57600,
        address: int = p.DEFAULT_ADDRESS,
        password: int = p.DEFAULT_PASSWORD,
        timeout_s: float = 2.0,
        retries: int = 1,
        handshake: bool = True,
    ) -> FingerprintDriver:
        """Open ``url``, verify the password and read the system parameters."""
        drv = cls(
            cls._open_port(url, baud),
            url=url,
            baud=baud,
            address=address,
            password=password,
            timeout_s=timeout_s,
            retries=retries,
        )
        if handshake:
            try:
                drv.handshake()
            except BaseException:
                drv.close()
                raise
        return drv

    def close(self) -> None:
        with self._lock:
            if self._port is not None:
                try:
                    self._port.close()
                except Exception:
                    log.debug("error while closing %s", self.url, exc_info=True)
                self._port = None

    def __enter__(self) -> FingerprintDriver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def reopen(self) -> None:
        """Close and reopen the port, then verify the password and re-read the parameters."""
        with self._lock:
            self.close()
            self._port = self._open_port(self.url, self.baud)
            self.parser.reset()
            self.reopens += 1
            self.handshake()

    def recover(self, timeout_s: float = 10.0, interval_s: float = 0.2) -> None:
        """Try :meth:`reopen` until it succeeds or ``timeout_s`` passes (then raise the last error)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.reopen()
                return
            except FingerprintError:
                if time.monotonic() + interval_s > deadline:
                    raise
                time.sleep(interval_s)

    # -- the exchange ----------------------------------------------------------------------------

    def _error(self, cls: type[FingerprintError], message: str, **kw: Any) -> FingerprintError:
        frames = tuple(self.frames)
        log.warning("%s; last frames:\n%s", message, "\n".join(frames))
        return cls(message, port=self.url, last_frames=frames, **kw)

    def _ensure_port(self) -> Any:
        if self._port is None:
            log.info("reopening fingerprint port %s", self.url)
            self._port = self._open_port(self.url, self.baud)
            self.parser.reset()
            self.reopens += 1
            port = self._port
            self._handshake_locked()
            return port
        return self._port

    def _write(self, data: bytes, what: str) -> None:
        port = self._ensure_port()
        try:
            port.write(data)
            port.flush()
        except _port_errors() as exc:
            self.close()
            raise self._error(
                SensorDisconnectedError, f"fingerprint sensor on {self.url} failed during {what}: {exc}"
            ) from exc

    def _read_frame(self, deadline: float, what: str) -> p.Frame:

        garbage = 0
        bad_sums = 0
        while True:
            port = self._port
            if port is None:
                raise self._error(
                    SensorDisconnectedError, f"fingerprint sensor port {self.url} is closed during {what}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if bad_sums:
                    raise self._error(
                        SensorChecksumError, f"fingerprint sensor on {self.url}: bad checksum answering {what}"
                    )
                if garbage:
                    raise self._error(
                        SensorGarbledError,
                        f"fingerprint sensor on {self.url}: {garbage} bytes but no valid frame answering {what}",
                    )
                raise self._error(SensorTimeoutError, f"fingerprint sensor on {self.url} did not answer {what} in time")
            try:
                # The port's read timeout stays at 50 ms (set at open): changing it per read would
                # reconfigure the tty each time. The deadline may overshoot by at most that much.
                data = port.read(max(1, port.in_waiting))
            except _port_errors_and_type() as exc:
                self.close()
                raise self._error(
                    SensorDisconnectedError, f"fingerprint sensor on {self.url} disconnected during {what}: {exc}"
                ) from exc
            if not data:
                continue
            for event in self.parser.feed(data):
                if isinstance(event, p.Frame):
                    self.frames.append(_describe("<-", event))
                    self._queue.append(event)
                elif isinstance(event, p.BadChecksum):
                    bad_sums += 1
                    self.frames.append(f"<- {event.describe()}")
                elif isinstance(event, p.ForeignAddress):
                    garbage += len(event.frame.content) + p.OVERHEAD
                    self.frames.append(f"<- {event.describe()}")
                else:
                    garbage += len(event.data) if isinstance(event, p.Garbage) else 1
                    self.frames.append(f"<- {event.describe()}")
            if self._queue:
                return self._queue.popleft()

    def _next_frame(self, deadline: float, what: str) -> p.Frame:
        if self._queue:
            return self._queue.popleft()
        return self._read_frame(deadline, what)

    def _resync(self) -> None:
        time.sleep(0.05)
        port = self._port
        if port is not None:
            try:
                port.reset_input_buffer()
            except Exception:
                log.debug("reset_input_buffer failed on %s", self.url, exc_info=True)
        self.parser.reset()
        self._queue.clear()

    def _call(
        self,
        ins: int,
        params: bytes = b"",
        *,
        accept: Collection[int] = (p.Code.OK,),
        data_in: int | None = None,
        data_out: bytes | None = None,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Send one instruction; return (code, payload after the code, data received)."""
        name = p.Ins(ins).name if ins in p.Ins._value2member_map_ else f"0x{ins:02X}"
        with self._lock:
            attempts = 1 + (self.retries if idempotent else 0)
            for attempt in range(attempts):
                try:
                    return self._call_once(ins, params, name, accept, data_in, data_out, timeout_s)
                except (SensorTimeoutError, SensorGarbledError, SensorProtocolError) as exc:
                    if attempt + 1 >= attempts:
                        raise
                    log.info("retrying %s on %s after %s", name, self.url, type(exc).__name__)
                    self._resync()
            raise AssertionError("unreachable")

    def _call_once(
        self,
        ins: int,
        params: bytes,
        name: str,
        accept: Collection[int],
        data_in: int | None,
        data_out: bytes | None,
        timeout_s: float | None,
    ) -> tuple[int, bytes, bytes]:
        base = self.timeout_s if timeout_s is None else timeout_s
        frame = p.Frame(p.Pid.COMMAND, bytes([ins]) + params, self.address)
        self._ensure_port()
        self._queue.clear()
        self.frames.append(_describe("->", frame))
        self._write(frame.encode(), name)
        reply = self._next_frame(time.monotonic() + base, name)
        if reply.pid != p.Pid.ACK or not reply.content:
            raise self._error(
                SensorProtocolError, f"fingerprint sensor on {self.url} sent pid 0x{reply.pid:02X} answering {name}"
            )
        code, payload = reply.content[0], reply.content[1:]
        if code not in accept:
            raise self._refused(code, name)
        data = b""
        if code == p.Code.OK and data_in is not None:
            data = self._receive_data(base, data_in, name)
        if code == p.Code.OK and data_out is not None:
            for chunk in p.chunk_data(data_out, self.packet_size, self.address):
                self.frames.append(f"-> data packet of {len(chunk) - p.OVERHEAD} bytes")
                self._write(chunk, name)
        return code, payload, data

    def _receive_data(self, base: float, expected: int, name: str) -> bytes:
        wire = p.wire_seconds(p.wire_bytes(expected, self.packet_size), self.baud)
        deadline = time.monotonic() + base + 2 * wire
        out = bytearray()
        while True:
            frame = self._next_frame(deadline, f"{name} data")
            if frame.pid not in (p.Pid.DATA, p.Pid.END):
                raise self._error(
                    SensorProtocolError,
                    f"fingerprint sensor on {self.url} sent pid 0x{frame.pid:02X} inside {name} data",
                )
            out += frame.content
            if frame.pid == p.Pid.END:
                return bytes(out)
            if len(out) > 4 * max(expected, 1) + 4096:
                raise self._error(SensorProtocolError, f"fingerprint sensor on {self.url} sent too much {name} data")

    def _refused(self, code: int, name: str) -> FingerprintError:
        text = p.code_text(code)
        if code == p.Code.WRONG_PASSWORD:
            return self._error(WrongPasswordError, f"fingerprint sensor on {self.url} refused the password", code=code)
        if code == p.Code.PASSWORD_REQUIRED:
            return self._error(
                WrongPasswordError, f"fingerprint sensor on {self.url} wants the password verified first", code=code
            )
        return self._error(
            SensorRefusedError,
            f"fingerprint sensor on {self.url} answered {name} with 0x{code:02X} ({text})",
            code=code,
        )

    # -- identity and settings -------------------------------------------------------------------

    def handshake(self) -> p.SystemParameters:
        """Verify the password and read the system parameters (capacity, packet size, baud)."""
        with self._lock:
            self._ensure_port()
            return self._handshake_locked()

    def _handshake_locked(self) -> p.SystemParameters:
        self._call(p.Ins.VFY_PWD, struct.pack(">I", self._password))
        return self.read_system_parameters()

    def check_module(self) -> bool:
        """GetEcho (0x53): True when the module answers 0x55."""
        code, _, _ = self._call(p.Ins.GET_ECHO, accept=range(256))
        return code == p.Code.ECHO_OK

    def read_system_parameters(self) -> p.SystemParameters:
        _, payload, _ = self._call(p.Ins.READ_SYS_PARA)
        try:
            params = p.SystemParameters.decode(payload)
        except p.CodecError as exc:
            raise self._error(SensorProtocolError, f"fingerprint sensor on {self.url}: {exc}") from exc
        self.params = params
        if params.packet_size:
            self.packet_size = params.packet_size
        return params

    @property
    def capacity(self) -> int:
        if self.params is None:
            self.read_system_parameters()
        assert self.params is not None
        return self.params.capacity

    def set_system_parameter(self, register: int, value: int) -> None:
        self._call(p.Ins.SET_SYS_PARA, bytes([register, value]))

    def set_security_level(self, level: int) -> None:
        if not 1 <= level <= 5:
            raise ValueError(f"security level must be 1..5, got {level}")
        self.set_system_parameter(p.SysParam.SECURITY, level)
        self.read_system_parameters()

    def set_packet_size(self, size: int) -> None:
        code = p.packet_size_code(size)
        self.set_system_parameter(p.SysParam.PACKET_SIZE, code)
        self.read_system_parameters()

    def set_baud(self, baud: int) -> bool:
        """Ask the module for ``baud`` (9600*N). Returns True when it applies at once (the port is
        switched and the module answers), False when the module keeps the old rate until restart."""
        if baud % 9600 or not 1 <= baud // 9600 <= 12:
            raise ValueError(f"baud must be 9600*N with N in 1..12, got {baud}")
        with self._lock:
            old = self.baud
            self.set_system_parameter(p.SysParam.BAUD, baud // 9600)
            port = self._ensure_port()
            time.sleep(0.05)
            port.baudrate = baud
            self.baud = baud
            try:
                self.read_system_parameters()
                return True
            except (SensorTimeoutError, SensorGarbledError):
                port.baudrate = old
                self.baud = old
                self._resync()
                self.read_system_parameters()
                return False

    def set_password(self, password: int) -> None:
        self._call(p.Ins.SET_PWD, struct.pack(">I", password), idempotent=True)
        self._password = password

    # -- library ---------------------------------------------------------------------------------

    def template_count(self) -> int:
        _, payload, _ = self._call(p.Ins.TEMPLATE_NUM)
        return int(struct.unpack(">H", payload[:2])[0])

    def index_table(self, page: int) -> list[int]:
        _, payload, _ = self._call(p.Ins.READ_INDEX_TABLE, bytes([page]))
        return p.decode_index_page(page, payload[:32])

    def occupied(self) -> list[int]:
        pages = min(4, -(-self.capacity // p.INDEX_PAGE_POSITIONS))
        return [pos for page in range(pages) for pos in self.index_table(page) if pos < self.capacity]

    def first_free(self) -> int:
        used = set(self.occupied())
        for slot in range(min(self.capacity, 4 * p.INDEX_PAGE_POSITIONS)):
            if slot not in used:
                return slot
        raise self._error(LibraryFullError, f"fingerprint library on {self.url} is full ({self.capacity} templates)")

    def store(self, slot: int, buffer: int = 1) -> None:
        self._call(p.Ins.STORE, struct.pack(">BH", buffer, slot))

    def load(self, slot: int, buffer: int = 1) -> None:
        self._call(p.Ins.LOAD_CHAR, struct.pack(">BH", buffer, slot))

    def delete(self, slot: int, count: int = 1) -> None:
        self._call(p.Ins.DELETE, struct.pack(">HH", slot, count))

    def empty(self) -> None:
        self._call(p.Ins.EMPTY)

    def read_template(self, buffer: int = 1, expected: int = 1536) -> bytes:
        """UpChar: the module sends the buffer's template (512 B on R307, 1536 B on R503)."""
        return self._call(p.Ins.UP_CHAR, bytes([buffer]), data_in=expected)[2]

    def write_template(self, data: bytes, buffer: int = 1) -> None:
        """DownChar: send a template into a buffer (no acknowledge follows the data)."""
        self._call(p.Ins.DOWN_CHAR, bytes([buffer]), data_out=data)

    # -- capture and matching --------------------------------------------------------------------

    def capture(self) -> bool:
        """GenImg once: True when an image was taken, False when no finger is on the glass."""
        code, _, _ = self._call(p.Ins.GEN_IMG, accept=(p.Code.OK, p.Code.NO_FINGER, p.Code.ENROL_FAIL))
        return code == p.Code.OK

    def wait_for_finger(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """Poll GenImg until a finger gives an image (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.capture():
                return True
            if time.monotonic() + poll_s > deadline:
                return False
            time.sleep(poll_s)

    def wait_for_lift(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.capture():
                return True
            if time.monotonic() + poll_s > deadline:
                return False
            time.sleep(poll_s)

    def image2tz(self, buffer: int = 1) -> int:
        """Img2Tz: returns the code (0 ok; 0x06 disordered, 0x07 too few features, 0x15 no image)."""
        quality = (p.Code.OK, p.Code.IMAGE_DISORDERED, p.Code.TOO_FEW_FEATURES, p.Code.NO_VALID_IMAGE)
        code, _, _ = self._call(p.Ins.IMG2TZ, bytes([buffer]), accept=quality, timeout_s=max(self.timeout_s, 5.0))
        return code

    def merge(self) -> bool:
        """RegModel: merge buffers 1 and 2; False when they are not the same finger (0x0A)."""
        code, _, _ = self._call(p.Ins.REG_MODEL, accept=(p.Code.OK, p.Code.MERGE_FAIL), idempotent=False)
        return code == p.Code.OK

    def match(self) -> tuple[bool, int]:
        """Match buffers 1 and 2: (matched, score)."""
        code, payload, _ = self._call(
            p.Ins.MATCH, accept=(p.Code.OK, p.Code.NO_MATCH), timeout_s=max(self.timeout_s, 5.0)
        )
        score = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 0
        return code == p.Code.OK, int(score)

    def search(self, buffer: int = 1, start: int = 0, count: int | None = None) -> tuple[int, int] | None:
        """1:N search of a buffer: (slot, score) or None."""
        n = self.capacity - start if count is None else count
        code, payload, _ = self._call(
            p.Ins.SEARCH,
            struct.pack(">BHH", buffer, start, n),
            accept=(p.Code.OK, p.Code.NOT_FOUND),
            timeout_s=max(self.timeout_s, 10.0),
        )
        if code != p.Code.OK:
            return None
        slot, score = struct.unpack(">HH", payload[:4])
        return int(slot), int(score)

    def verify(self, slot: int) -> int | None:
        """1:1: match the features in buffer 1 against library ``slot`` (loaded into buffer 2); score or None."""
        self.load(slot, buffer=2)
        ok, score = self.match()
        return score if ok else None

    def led(self, mode: int, colour: int, speed: int = 0, cycles: int = 0) -> None:
        """R503 AuraLedConfig."""
        self._call(p.Ins.AURA_LED, bytes([mode, speed, colour, cycles]))

    def ring(self, colour: str | None) -> None:
        """The ring steadily in a panel's LED colour (OSDP names); None or "none": back to ready."""
        if colour is None or colour not in PANEL_COLOURS:
            self.led_state("ready" if colour is None else "off")
            return
        self.led(p.LedMode.ON, PANEL_COLOURS[colour])

    def led_state(self, name: str) -> None:
        """Named LED state: ready, scanning, success, failure, off."""
        pat = LED[name]
        self.led(pat.mode, pat.colour, pat.speed, pat.cycles)
