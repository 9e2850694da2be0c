"""The simulated EF01 module: a pure state machine from received frames to reply bytes.

No I/O here: :class:`SimModule` gets decoded frames and returns the bytes the module would send.
The pty server (``server.py``) moves bytes, injects faults and paces them. Behaviour follows
docs/fingerprint-protocol.md; where the sources leave a point open, this module decides as follows
(and docs/fingerprint-sim.md repeats it):

* a command with a foreign address gets no reply (the manuals say the module "rejects" it);
* a command with a bad checksum gets ack 0x01 (error when receiving the packet);
* an unknown instruction gets 0xFC on the R503 and 0x01 on the R307;
* LoadChar of an empty slot gets 0x0C; UpChar always sends ``template_size`` bytes;
* Search not found answers 0x09 with page 0 and score 0;
* SetSysPara acknowledges with the old settings, then applies them; a new baud rate applies at once
  (``baud_applies="now"``) or at the next launch (``"restart"``, kept only with ``--state``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.fingerprint import protocol as p
from edge.fingerprint.sim.templates import MIN_MINUTIAE, FeatureSet, Matcher, decode_template, encode_template

log = logging.getLogger(__name__)

#: Bozorth3 score a match needs at each security level (1 = most lenient). On the FVC2002 dev pairs
#: (benchmarks/bench_fingerprint_matcher.py --impostors all; one impression against one) level 3,
#: the factory setting, gives FMR 0.5% and FNMR 43%; the EER (15.4%) lies at a score of 8.
SECURITY_THRESHOLDS = {1: 12, 2: 16, 3: 20, 4: 26, 5: 34}
#: RegModel only checks that two captures plausibly come from one finger, at the most lenient level
#: (real modules are lenient here too: R503s were reported merging two different fingers).
MERGE_THRESHOLD = SECURITY_THRESHOLDS[1]


@dataclass(frozen=True)
class ModelProfile:
    name: str
    image_width: int
    image_height: int
    template_size: int
    capacity: int
    char_buffers: int
    r503_extras: bool
    baud_ns: tuple[int, ...]
    product: str


R307 = ModelProfile("r307", 256, 288, 512, 1000, 2, False, tuple(range(1, 13)), "R307")
R503 = ModelProfile("r503", 192, 192, 1536, 200, 6, True, (1, 2, 4, 6, 12), "R503")
MODELS = {"r307": R307, "r503": R503}


@dataclass
class Settings:
    """What the module keeps in flash."""

    password: int = p.DEFAULT_PASSWORD
    address: int = p.DEFAULT_ADDRESS
    security: int = 3
    packet_code: int = 2
    baud_n: int = 6
    library: dict[int, bytes] = field(default_factory=dict)
    notepad: dict[int, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "password": self.password,
            "address": self.address,
            "security": self.security,
            "packet_code": self.packet_code,
            "baud_n": self.baud_n,
            "library": {str(k): v.hex() for k, v in self.library.items()},
            "notepad": {str(k): v.hex() for k, v in self.notepad.items()},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Settings:
        return cls(
            password=int(obj["password"]),
            address=int(obj["address"]),
            security=int(obj["security"]),
            packet_code=int(obj["packet_code"]),
            baud_n=int(obj["baud_n"]),
            library={int(k): bytes.fromhex(v) for k, v in obj["library"].items()},
            notepad={int(k): bytes.fromhex(v) for k, v in obj["notepad"].items()},
        )


def load_settings(path: Path) -> Settings:
    if not path.is_file():
        return Settings()
    return Settings.from_json(json.loads(path.read_text()))


def save_settings(path: Path, settings: Settings) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(settings.to_json()))
    tmp.replace(path)


@dataclass
class Capture:
    """What GenImg put in the image buffer."""

    image: Any  # uint8 array at the model's geometry
    features: FeatureSet | None  # None: not a usable finger (smudge) or not extracted yet
    extractable: bool = True  # False for a smudge: Img2Tz answers 0x06


#: What is on the glass: None (nothing), a Capture ready to take, or a callable producing one.
PresenceFn = Callable[[], Capture | None]


class SimModule:
    """One EF01 module. ``handle(frame)`` returns the bytes to send back (possibly none)."""

    def __init__(
        self,
        profile: ModelProfile,
        presence: PresenceFn,
        *,
        settings: Settings | None = None,
        on_change: Callable[[Settings], None] | None = None,
        baud_applies: str = "now",
        extract_image: Callable[[Any], FeatureSet] | None = None,
        matcher: Matcher | None = None,
    ) -> None:
        self.profile = profile
        self.presence = presence
        self.settings = settings or Settings()
        self.on_change = on_change
        self.baud_applies = baud_applies
        self.extract_image = extract_image
        self.matcher = matcher or Matcher()
        #: The baud N the module listens at now (may differ from flash until restart).
        self.active_baud_n = self.settings.baud_n
        self.active_packet_code = self.settings.packet_code
        self.verified = self.settings.password == p.DEFAULT_PASSWORD
        self.buffers: dict[int, bytes] = {}
        self.capture: Capture | None = None
        self.last_search_hit = False
        self.led: tuple[int, int, int, int] = (4, 0, 0, 0)
        self._pending: tuple[str, int] | None = None
        self._incoming = bytearray()

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def threshold(self) -> int:
        return SECURITY_THRESHOLDS.get(self.settings.security, SECURITY_THRESHOLDS[3])

    def _ack(self, code: int, payload: bytes = b"") -> bytes:
        return p.ack(code, payload, self.settings.address)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.settings)

    def _buffer_id(self, raw: int) -> int | None:
        if self.profile.char_buffers == 2:
            return raw if raw in (1, 2) else None
        return raw if 1 <= raw <= self.profile.char_buffers else None

    # -- entry points ----------------------------------------------------------------------------

    def handle(self, frame: p.Frame) -> bytes:
        if frame.address != self.settings.address:
            log.debug("dropping a frame for foreign address 0x%08X", frame.address)
            return b""
        if frame.pid in (p.Pid.DATA, p.Pid.END):
            return self._data(frame)
        if frame.pid != p.Pid.COMMAND or not frame.content:
            return b""
        self._pending = None  # a new command abandons an unfinished host->module transfer
        ins, args = frame.content[0], frame.content[1:]
        if not self.verified and ins not in (p.Ins.VFY_PWD, p.Ins.GET_ECHO, p.Ins.HANDSHAKE):
            return self._ack(p.Code.PASSWORD_REQUIRED)
        handler = self._handlers().get(ins)
        if handler is None or (ins >= 0x28 and ins != p.Ins.GET_ECHO and not self.profile.r503_extras):
            return self._ack(p.Code.UNSUPPORTED if self.profile.r503_extras else p.Code.PACKET_ERROR)
        try:
            return handler(args)
        except (struct.error, IndexError, ValueError):  # truncated parameters
            return self._ack(p.Code.PACKET_ERROR)

    def bad_checksum(self) -> bytes:
        return self._ack(p.Code.PACKET_ERROR)

    def _handlers(self) -> dict[int, Callable[[bytes], bytes]]:
        return {
            p.Ins.GEN_IMG: self._gen_img,
            p.Ins.IMG2TZ: self._img2tz,
            p.Ins.MATCH: self._match,
            p.Ins.SEARCH: self._search,
            p.Ins.HIGH_SPEED_SEARCH: self._search,
            p.Ins.REG_MODEL: self._reg_model,
            p.Ins.STORE: self._store,
            p.Ins.LOAD_CHAR: self._load_char,
            p.Ins.UP_CHAR: self._up_char,
            p.Ins.DOWN_CHAR: self._down_char,
            p.Ins.UP_IMAGE: self._up_image,
            p.Ins.DOWN_IMAGE: self._down_image,
            p.Ins.DELETE: self._delete,
            p.Ins.EMPTY: self._empty,
            p.Ins.SET_SYS_PARA: self._set_sys_para,
            p.Ins.READ_SYS_PARA: self._read_sys_para,
            p.Ins.SET_PWD: self._set_pwd,
            p.Ins.VFY_PWD: self._vfy_pwd,
            p.Ins.GET_RANDOM: lambda _a: self._ack(0, secrets.token_bytes(4)),
            p.Ins.SET_ADDR: self._set_addr,
            p.Ins.WRITE_NOTEPAD: self._write_notepad,
            p.Ins.READ_NOTEPAD: self._read_notepad,
            p.Ins.TEMPLATE_NUM: lambda _a: self._ack(0, struct.pack(">H", len(self.settings.library))),
            p.Ins.READ_INDEX_TABLE: self._read_index,
            p.Ins.AURA_LED: self._led,
            p.Ins.CHECK_SENSOR: lambda _a: self._ack(0),
            p.Ins.READ_PROD_INFO: self._prod_info,
            p.Ins.SOFT_RESET: self._soft_reset,
            p.Ins.HANDSHAKE: lambda _a: self._ack(0),
            p.Ins.GET_ECHO: lambda _a: self._ack(p.Code.ECHO_OK),
        }

    # -- capture and features --------------------------------------------------------------------

    def _gen_img(self, _args: bytes) -> bytes:
        capture = self.presence()
        if capture is None:
            return self._ack(p.Code.NO_FINGER)
        self.capture = capture
        return self._ack(p.Code.OK)

    def _img2tz(self, args: bytes) -> bytes:
        buf = self._buffer_id(args[0])
        if buf is None:
            return self._ack(p.Code.PACKET_ERROR)
        cap = self.capture
        if cap is None:
            return self._ack(p.Code.NO_VALID_IMAGE)
        if not cap.extractable:
            return self._ack(p.Code.IMAGE_DISORDERED)
        if cap.features is None and self.extract_image is not None:
            cap.features = self.extract_image(cap.image)
        if cap.features is None or len(cap.features.minutiae) < MIN_MINUTIAE:
            return self._ack(p.Code.TOO_FEW_FEATURES)
        self.buffers[buf] = encode_template([cap.features], self.profile.template_size)
        return self._ack(p.Code.OK)

    def _sets(self, buf: int) -> list[FeatureSet]:
        data = self.buffers.get(buf)
        return decode_template(data) if data else []

    def _match(self, _args: bytes) -> bytes:
        score = self.matcher.score(self._sets(1), self._sets(2))
        code = p.Code.OK if score >= self.threshold else p.Code.NO_MATCH
        return self._ack(code, struct.pack(">H", min(score, 0xFFFF)))

    def _search(self, args: bytes) -> bytes:
        raw, start, count = struct.unpack(">BHH", args[:5])
        buf = self._buffer_id(raw)
        if buf is None:
            return self._ack(p.Code.PACKET_ERROR, bytes(4))
        probe = self._sets(buf)
        best_page, best = 0, 0
        if probe:
            for page in sorted(self.settings.library):
                if start <= page < start + count:
                    score = self.matcher.score(probe, decode_template(self.settings.library[page]))
                    if score > best:
                        best_page, best = page, score
        self.last_search_hit = best >= self.threshold
        if not self.last_search_hit:
            return self._ack(p.Code.NOT_FOUND, bytes(4))
        return self._ack(p.Code.OK, struct.pack(">HH", best_page, min(best, 0xFFFF)))

    def _reg_model(self, _args: bytes) -> bytes:
        a, b = self._sets(1), self._sets(2)
        if not a or not b or self.matcher.score(a, b) < MERGE_THRESHOLD:
            return self._ack(p.Code.MERGE_FAIL)
        unique: dict[bytes, FeatureSet] = {}
        for fs in a + b:
            unique.setdefault(fs.key(), fs)
        merged = sorted(unique.values(), key=lambda fs: -len(fs.minutiae))[:2]
        template = encode_template(merged, self.profile.template_size)
        self.buffers[1] = self.buffers[2] = template
        return self._ack(p.Code.OK)

    # -- library ---------------------------------------------------------------------------------

    def _buffer_and_page(self, args: bytes) -> tuple[int, int] | bytes:
        """Store's and LoadChar's (buffer id, page) arguments, or the module's error reply."""
        raw, page = struct.unpack(">BH", args[:3])
        buf = self._buffer_id(raw)
        if buf is None:
            return self._ack(p.Code.PACKET_ERROR)
        if page >= self.profile.capacity:
            return self._ack(p.Code.BAD_PAGE)
        return buf, page

    def _store(self, args: bytes) -> bytes:
        target = self._buffer_and_page(args)
        if isinstance(target, bytes):
            return target
        buf, page = target
        data = self.buffers.get(buf)
        if data is None:
            return self._ack(p.Code.PACKET_ERROR)
        self.settings.library[page] = data
        self._changed()
        return self._ack(p.Code.OK)

    def _load_char(self, args: bytes) -> bytes:
        target = self._buffer_and_page(args)
        if isinstance(target, bytes):
            return target
        buf, page = target
        data = self.settings.library.get(page)
        if data is None:
            return self._ack(p.Code.TEMPLATE_READ_ERROR)
        self.buffers[buf] = data
        return self._ack(p.Code.OK)

    def _delete(self, args: bytes) -> bytes:
        page, count = struct.unpack(">HH", args[:4])
        if count == 0 or page + count > self.profile.capacity:
            return self._ack(p.Code.DELETE_FAIL)
        for slot in range(page, page + count):
            self.settings.library.pop(slot, None)
        self._changed()
        return self._ack(p.Code.OK)

    def _empty(self, _args: bytes) -> bytes:
        self.settings.library.clear()
        self._changed()
        return self._ack(p.Code.OK)

    def _read_index(self, args: bytes) -> bytes:
        page = args[0]
        if page > 3:
            return self._ack(p.Code.PACKET_ERROR, bytes(32))
        return self._ack(p.Code.OK, p.encode_index_page(page, frozenset(self.settings.library)))

    # -- data phases -----------------------------------------------------------------------------

    def _send_data(self, data: bytes) -> bytes:
        size = p.PACKET_SIZES[self.active_packet_code]
        return self._ack(p.Code.OK) + b"".join(p.chunk_data(data, size, self.settings.address))

    def _up_char(self, args: bytes) -> bytes:
        buf = self._buffer_id(args[0])
        if buf is None:
            return self._ack(p.Code.PACKET_ERROR)
        data = self.buffers.get(buf)
        if data is None:
            return self._ack(p.Code.UPLOAD_TEMPLATE_ERROR)
        return self._send_data(data)

    def _down_char(self, args: bytes) -> bytes:
        buf = self._buffer_id(args[0]) or 2
        self._pending = ("char", buf)
        self._incoming.clear()
        return self._ack(p.Code.OK)

    def _up_image(self, _args: bytes) -> bytes:
        if self.capture is None:
            return self._ack(p.Code.UPLOAD_IMAGE_ERROR)
        return self._send_data(pack_image(self.capture.image))

    def _down_image(self, _args: bytes) -> bytes:
        self._pending = ("image", 0)
        self._incoming.clear()
        return self._ack(p.Code.OK)

    def _data(self, frame: p.Frame) -> bytes:
        if self._pending is None:
            return b""  # a data packet "shall not appear alone": ignore it
        self._incoming += frame.content
        if frame.pid != p.Pid.END:
            return b""
        kind, buf = self._pending
        self._pending = None
        data = bytes(self._incoming)
        self._incoming.clear()
        if kind == "char":
            size = self.profile.template_size
            self.buffers[buf] = data[:size] + bytes(max(0, size - len(data)))
        else:
            image = unpack_image(data, self.profile.image_width, self.profile.image_height)
            self.capture = Capture(image, None)
        return b""  # no acknowledge follows host->module data [peers]

    # -- settings --------------------------------------------------------------------------------

    def _set_sys_para(self, args: bytes) -> bytes:
        reg, value = args[0], args[1]
        bad = p.Code.BAD_REGISTER_CONFIG if self.profile.r503_extras else p.Code.BAD_REGISTER
        if reg == p.SysParam.BAUD:
            if value not in self.profile.baud_ns:
                return self._ack(bad)
            self.settings.baud_n = value
            if self.baud_applies == "now":
                self.active_baud_n = value
        elif reg == p.SysParam.SECURITY:
            if not 1 <= value <= 5:
                return self._ack(bad)
            self.settings.security = value
        elif reg == p.SysParam.PACKET_SIZE:
            if value > 3:
                return self._ack(bad)
            self.settings.packet_code = value
            self.active_packet_code = value
        else:
            return self._ack(p.Code.BAD_REGISTER)
        self._changed()
        return self._ack(p.Code.OK)

    def system_parameters(self) -> p.SystemParameters:
        status = (4 if self.verified else 0) | (8 if self.capture is not None else 0)
        status |= 2 if self.last_search_hit else 0
        return p.SystemParameters(
            status=status,
            capacity=self.profile.capacity,
            security_level=self.settings.security,
            address=self.settings.address,
            packet_size_code=self.active_packet_code,
            baud_n=self.active_baud_n,
        )

    def _read_sys_para(self, _args: bytes) -> bytes:
        return self._ack(p.Code.OK, self.system_parameters().encode())

    def _set_pwd(self, args: bytes) -> bytes:
        (self.settings.password,) = struct.unpack(">I", args[:4])
        self._changed()
        return self._ack(p.Code.OK)

    def _vfy_pwd(self, args: bytes) -> bytes:
        (pwd,) = struct.unpack(">I", args[:4])
        if pwd != self.settings.password:
            return self._ack(p.Code.WRONG_PASSWORD)
        self.verified = True
        return self._ack(p.Code.OK)

    def _set_addr(self, args: bytes) -> bytes:
        (self.settings.address,) = struct.unpack(">I", args[:4])
        self._changed()
        return self._ack(p.Code.OK)

    def _write_notepad(self, args: bytes) -> bytes:
        page = args[0]
        if page >= 16 or len(args) < 33:
            return self._ack(p.Code.BAD_NOTEPAD_PAGE if self.profile.r503_extras else p.Code.PACKET_ERROR)
        self.settings.notepad[page] = bytes(args[1:33])
        self._changed()
        return self._ack(p.Code.OK)

    def _read_notepad(self, args: bytes) -> bytes:
        page = args[0]
        if page >= 16:
            return self._ack(p.Code.BAD_NOTEPAD_PAGE if self.profile.r503_extras else p.Code.PACKET_ERROR, bytes(32))
        return self._ack(p.Code.OK, self.settings.notepad.get(page, bytes(32)))

    def _led(self, args: bytes) -> bytes:
        ctrl, speed, colour, times = args[:4]
        if not 1 <= ctrl <= 6 or not 1 <= colour <= 7:
            return self._ack(p.Code.PACKET_ERROR)
        self.led = (ctrl, speed, colour, times)
        return self._ack(p.Code.OK)

    def _prod_info(self, _args: bytes) -> bytes:
        prof = self.profile
        info = (
            prof.product.encode().ljust(16, b"\0")
            + b"SIM1"
            + b"00000001"
            + bytes([1, 0])
            + b"EDGESIM\0"
            + struct.pack(">HHHH", prof.image_width, prof.image_height, prof.template_size, prof.capacity)
        )
        return self._ack(p.Code.OK, info)

    def _soft_reset(self, _args: bytes) -> bytes:
        self.verified = self.settings.password == p.DEFAULT_PASSWORD
        self.buffers.clear()
        self.capture = None
        self.active_packet_code = self.settings.packet_code
        return self._ack(p.Code.OK) + b"\x55"


def pack_image(image: Any) -> bytes:
    """8-bit grey image -> 4 bits per pixel, left pixel in the high nibble, rows from the top."""
    import numpy as np

    arr = np.asarray(image, dtype=np.uint8)
    hi = arr[:, 0::2] >> 4
    lo = arr[:, 1::2] >> 4
    return bytes((hi << 4 | lo).astype(np.uint8).tobytes())


def unpack_image(data: bytes, width: int, height: int) -> Any:
    import numpy as np

    need = width * height // 2
    raw = np.frombuffer(data[:need].ljust(need, b"\xff"), dtype=np.uint8).reshape(height, width // 2)
    out = np.empty((height, width), dtype=np.uint8)
    out[:, 0::2] = (raw >> 4) * 17
    out[:, 1::2] = (raw & 0x0F) * 17
    return out
