"""The ZhianTec/Grow "EF01" packet codec: pure bytes in, bytes or values out, no I/O.

Frame layout (all multi-byte fields big-endian)::

    | EF 01 | ADDR (4) | PID (1) | LEN (2) | CONTENT (LEN-2) | SUM (2) |

``LEN`` counts the content plus the checksum; ``SUM`` is (PID + LEN_hi + LEN_lo + sum(CONTENT))
mod 65536. Both peer drivers send 256-byte data payloads (LEN 0x0102), so the parser accepts up to
:data:`MAX_CONTENT` content bytes. See docs/fingerprint-protocol.md for the sources.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from edge.errors import HardwareError

HEADER = b"\xef\x01"
DEFAULT_ADDRESS = 0xFFFFFFFF
DEFAULT_PASSWORD = 0
#: The largest content a data packet carries (256-byte packets; LEN 0x0102).
MAX_CONTENT = 256
#: Bytes of framing around the content: header 2, address 4, PID 1, LEN 2, checksum 2.
OVERHEAD = 11
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
PACKET_SIZES = (32, 64, 128, 256)
INDEX_PAGE_POSITIONS = 256


class Pid(enum.IntEnum):
    """Packet identifiers."""

    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END = 0x08


class Ins(enum.IntEnum):
    """Instruction codes (first content byte of a command packet)."""

    GEN_IMG = 0x01
    IMG2TZ = 0x02
    MATCH = 0x03
    SEARCH = 0x04
    REG_MODEL = 0x05
    STORE = 0x06
    LOAD_CHAR = 0x07
    UP_CHAR = 0x08
    DOWN_CHAR = 0x09
    UP_IMAGE = 0x0A
    DOWN_IMAGE = 0x0B
    DELETE = 0x0C
    EMPTY = 0x0D
    SET_SYS_PARA = 0x0E
    READ_SYS_PARA = 0x0F
    SET_PWD = 0x12
    VFY_PWD = 0x13
    GET_RANDOM = 0x14
    SET_ADDR = 0x15
    WRITE_NOTEPAD = 0x18
    READ_NOTEPAD = 0x19
    HIGH_SPEED_SEARCH = 0x1B
    TEMPLATE_NUM = 0x1D
    READ_INDEX_TABLE = 0x1F
    AURA_LED = 0x35
    CHECK_SENSOR = 0x36
    READ_PROD_INFO = 0x3C
    SOFT_RESET = 0x3D
    HANDSHAKE = 0x40
    GET_ECHO = 0x53


class Code(enum.IntEnum):
    """Confirmation codes (first content byte of an acknowledge packet)."""

    OK = 0x00
    PACKET_ERROR = 0x01
    NO_FINGER = 0x02
    ENROL_FAIL = 0x03
    IMAGE_DISORDERED = 0x06
    TOO_FEW_FEATURES = 0x07
    NO_MATCH = 0x08
    NOT_FOUND = 0x09
    MERGE_FAIL = 0x0A
    BAD_PAGE = 0x0B
    TEMPLATE_READ_ERROR = 0x0C
    UPLOAD_TEMPLATE_ERROR = 0x0D
    CANNOT_RECEIVE = 0x0E
    UPLOAD_IMAGE_ERROR = 0x0F
    DELETE_FAIL = 0x10
    EMPTY_FAIL = 0x11
    WRONG_PASSWORD = 0x13
    NO_VALID_IMAGE = 0x15
    FLASH_ERROR = 0x18
    UNDEFINED = 0x19
    BAD_REGISTER = 0x1A
    BAD_REGISTER_CONFIG = 0x1B
    BAD_NOTEPAD_PAGE = 0x1C
    PORT_FAILURE = 0x1D
    LIBRARY_FULL = 0x1F
    WRONG_ADDRESS = 0x20
    PASSWORD_REQUIRED = 0x21
    TEMPLATE_EMPTY = 0x22
    LIBRARY_EMPTY = 0x24
    TIMEOUT = 0x26
    ALREADY_EXISTS = 0x27
    SENSOR_FAULT = 0x29
    ECHO_OK = 0x55
    UNSUPPORTED = 0xFC
    HARDWARE_ERROR = 0xFD
    EXEC_FAILED = 0xFE


CODE_TEXT: dict[int, str] = {
    0x00: "success",
    0x01: "error when receiving the packet",
    0x02: "no finger on the sensor",
    0x03: "failed to capture the finger",
    0x06: "image too disordered to make a character file",
    0x07: "too few feature points to make a character file",
    0x08: "fingers do not match",
    0x09: "no matching finger found",
    0x0A: "character files could not be combined (not the same finger)",
    0x0B: "page id beyond the library",
    0x0C: "error reading a template from the library, or the template is invalid",
    0x0D: "error uploading the template",
    0x0E: "module cannot receive the following data packets",
    0x0F: "error uploading the image",
    0x10: "failed to delete the template",
    0x11: "failed to clear the library",
    0x13: "wrong password",
    0x15: "no valid primary image",
    0x18: "error writing flash",
    0x19: "undefined error",
    0x1A: "invalid register number",
    0x1B: "incorrect register configuration",
    0x1C: "wrong notepad page",
    0x1D: "communication port failure",
    0x1F: "library full",
    0x20: "wrong address",
    0x21: "password must be verified first",
    0x22: "template empty",
    0x24: "library empty",
    0x26: "timeout",
    0x27: "fingerprint already exists",
    0x29: "sensor hardware error",
    0x55: "echo",
    0xFC: "unsupported command",
    0xFD: "hardware error",
    0xFE: "command execution failed",
}


def code_text(code: int) -> str:
    return CODE_TEXT.get(code, f"undocumented code 0x{code:02X}")


def checksum(pid: int, content: bytes) -> int:
    """SUM = (PID + LEN_hi + LEN_lo + sum(content)) mod 65536, where LEN = len(content) + 2."""
    length = len(content) + 2
    return (pid + (length >> 8) + (length & 0xFF) + sum(content)) & 0xFFFF


@dataclass(frozen=True)
class Frame:
    """One decoded packet."""

    pid: int
    content: bytes
    address: int = DEFAULT_ADDRESS

    def encode(self) -> bytes:
        return encode_frame(self.pid, self.content, self.address)

    @property
    def code(self) -> int:
        """The first content byte: instruction for commands, confirmation code for acks."""
        return self.content[0] if self.content else -1

    def __repr__(self) -> str:
        # Content of data packets may be template bytes: show only its size.
        if self.pid in (Pid.DATA, Pid.END):
            return f"Frame(pid=0x{self.pid:02X}, {len(self.content)} data bytes)"
        return f"Frame(pid=0x{self.pid:02X}, addr=0x{self.address:08X}, content={self.content.hex()})"


def encode_frame(pid: int, content: bytes, address: int = DEFAULT_ADDRESS) -> bytes:
    if not 0 <= pid <= 0xFF:
        raise ValueError(f"pid out of range: {pid}")
    if not 0 <= address <= 0xFFFFFFFF:
        raise ValueError(f"address out of range: {address}")
    if len(content) > MAX_CONTENT:
        raise ValueError(f"content of {len(content)} bytes exceeds {MAX_CONTENT}")
    length = len(content) + 2
    return HEADER + struct.pack(">IBH", address, pid, length) + content + struct.pack(">H", checksum(pid, content))


def command(ins: int, params: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_frame(Pid.COMMAND, bytes([ins]) + params, address)


def ack(code: int, payload: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_frame(Pid.ACK, bytes([code]) + payload, address)


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one frame; raise :class:`CodecError` on anything else."""
    parser = StreamParser()
    events = list(parser.feed(data))
    frames = [e for e in events if isinstance(e, Frame)]
    problems = [e for e in events if not isinstance(e, Frame)]
    if problems:
        raise CodecError(problems[0].describe())
    if len(frames) != 1 or parser.buffered:
        raise CodecError(f"expected exactly one frame, found {len(frames)} and {parser.buffered} spare bytes")
    return frames[0]


class CodecError(HardwareError, ValueError):
    """Bytes that do not form a valid frame (a ``HardwareError``: the product's own error tree)."""


# -- data phases ---------------------------------------------------------------------------------


def packet_size_bytes(code: int) -> int:
    if not 0 <= code < len(PACKET_SIZES):
        raise ValueError(f"packet size code must be 0..3, got {code}")
    return PACKET_SIZES[code]


def packet_size_code(size: int) -> int:
    if size not in PACKET_SIZES:
        raise ValueError(f"packet size must be one of {PACKET_SIZES}, got {size}")
    return PACKET_SIZES.index(size)


def chunk_data(data: bytes, packet_size: int, address: int = DEFAULT_ADDRESS) -> list[bytes]:
    """Split ``data`` into encoded data packets of ``packet_size`` bytes; the last has PID END."""
    if packet_size not in PACKET_SIZES:
        raise ValueError(f"packet size must be one of {PACKET_SIZES}, got {packet_size}")
    if not data:
        return [encode_frame(Pid.END, b"", address)]
    pieces = [data[i : i + packet_size] for i in range(0, len(data), packet_size)]
    return [
        encode_frame(Pid.END if i == len(pieces) - 1 else Pid.DATA, piece, address) for i, piece in enumerate(pieces)
    ]


def wire_bytes(payload_len: int, packet_size: int) -> int:
    """Bytes on the wire for a data phase of ``payload_len`` bytes."""
    packets = max(1, -(-payload_len // packet_size))
    return payload_len + packets * OVERHEAD


def wire_seconds(n_bytes: int, baud: int) -> float:
    return n_bytes * BITS_PER_BYTE / baud


# -- system parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemParameters:
    """The 16-byte ReadSysPara block."""

    status: int = 0
    system_id: int = 0
    capacity: int = 1000
    security_level: int = 3
    address: int = DEFAULT_ADDRESS
    packet_size_code: int = 2
    baud_n: int = 6

    _FMT = ">HHHHIHH"

    def encode(self) -> bytes:
        return struct.pack(
            self._FMT,
            self.status,
            self.system_id,
            self.capacity,
            self.security_level,
            self.address,
            self.packet_size_code,
            self.baud_n,
        )

    @classmethod
    def decode(cls, block: bytes) -> SystemParameters:
        if len(block) != 16:
            raise CodecError(f"system parameter block must be 16 bytes, got {len(block)}")
        return cls(*struct.unpack(cls._FMT, block))

    @property
    def packet_size(self) -> int:
        return PACKET_SIZES[self.packet_size_code] if 0 <= self.packet_size_code < 4 else 0

    @property
    def baud(self) -> int:
        return 9600 * self.baud_n


class SysParam(enum.IntEnum):
    """Register numbers for SetSysPara."""

    BAUD = 4
    SECURITY = 5
    PACKET_SIZE = 6


# -- index table ---------------------------------------------------------------------------------


def decode_index_page(page: int, table: bytes) -> list[int]:
    """Occupied positions in one 32-byte index page (byte k bit b, LSB first = 256*page + 8k + b)."""
    base = INDEX_PAGE_POSITIONS * page
    return [base + 8 * k + b for k, byte in enumerate(table) for b in range(8) if byte >> b & 1]


def encode_index_page(page: int, occupied: set[int] | frozenset[int]) -> bytes:
    out = bytearray(32)
    base = INDEX_PAGE_POSITIONS * page
    for pos in occupied:
        rel = pos - base
        if 0 <= rel < INDEX_PAGE_POSITIONS:
            out[rel // 8] |= 1 << (rel % 8)
    return bytes(out)


# -- LED (R503) ----------------------------------------------------------------------------------


class LedMode(enum.IntEnum):
    BREATHING = 1
    FLASHING = 2
    ON = 3
    OFF = 4
    FADE_ON = 5
    FADE_OFF = 6


class LedColour(enum.IntEnum):
    RED = 1
    BLUE = 2
    PURPLE = 3
    GREEN = 4
    YELLOW = 5
    CYAN = 6
    WHITE = 7


# -- stream parser -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadChecksum:
    """A complete frame whose checksum did not match; the parser resumed after its header."""

    pid: int
    length: int
    expected: int
    received: int
    raw: bytes

    def describe(self) -> str:
        return f"bad checksum on a frame with pid 0x{self.pid:02X}: got 0x{self.received:04X}, expected 0x{self.expected:04X}"


@dataclass(frozen=True)
class ForeignAddress:
    """A valid frame addressed to, or sent from, another address than the one expected."""

    frame: Frame

    def describe(self) -> str:
        return f"frame for foreign address 0x{self.frame.address:08X}"


@dataclass(frozen=True)
class Garbage:
    """Bytes skipped while looking for a header."""

    data: bytes

    def describe(self) -> str:
        return f"{len(self.data)} garbage bytes skipped"


@dataclass(frozen=True)
class BadLength:
    """A header followed by a LEN outside 2..258; the parser resumed after the header."""

    length: int

    def describe(self) -> str:
        return f"impossible length field {self.length}"


Event = Frame | BadChecksum | ForeignAddress | Garbage | BadLength


class StreamParser:
    """Incremental parser: feed bytes, get frames and problem events; resynchronises on garbage.

    Never raises on input and never buffers more than one maximal frame: after a bad checksum or
    an impossible length it drops the first header byte and searches for the next header, so a
    corrupt stream cannot wedge it.
    """

    def __init__(self, address: int | None = None) -> None:
        self._buf = bytearray()
        self.address = address

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> Iterator[Event]:
        self._buf += data
        while True:
            event = self._next()
            if event is None:
                return
            yield event

    def _next(self) -> Event | None:
        buf = self._buf
        start = buf.find(HEADER)
        if start < 0:
            # Keep a trailing 0xEF: it may be the first half of a header.
            keep = 1 if buf.endswith(b"\xef") else 0
            if len(buf) > keep:
                junk = bytes(buf[: len(buf) - keep])
                del buf[: len(buf) - keep]
                return Garbage(junk)
            return None
        if start > 0:
            junk = bytes(buf[:start])
            del buf[:start]
            return Garbage(junk)
        if len(buf) < 9:
            return None
        address, pid, length = struct.unpack_from(">IBH", buf, 2)
        if not 2 <= length <= MAX_CONTENT + 2:
            del buf[:1]
            return BadLength(length)
        total = 9 + length
        if len(buf) < total:
            return None
        content = bytes(buf[9 : total - 2])
        received = struct.unpack_from(">H", buf, total - 2)[0]
        expected = checksum(pid, content)
        if received != expected:
            raw = bytes(buf[:total])
            del buf[:1]
            return BadChecksum(pid, length, expected, received, raw)
        del buf[:total]
        frame = Frame(pid, content, address)
        if self.address is not None and address != self.address:
            return ForeignAddress(frame)
        return frame
