"""Every decoder of outside bytes, as a fuzz target: a hostile input generator and the entry point.

A target's ``run(input)`` must return or raise an ``EdgeError`` (the product's own tree); anything
else is a bug the fuzzer counts. Inputs come from ``edge.testing.hostile`` through a ``Chooser``,
so the same targets run under hypothesis (tests/fuzz) and under ``random`` (the benchmark
``benchmarks/fuzz_decoders.py``). Signed targets sign the hostile payload with the key the decoder
trusts, so the hostile bytes reach the decoder behind the signature check, as they would from a
registered device or a (compromised) authority.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cbor2
from nacl.signing import SigningKey

from edge.testing.hostile import (
    Chooser,
    bstr,
    head,
    hostile_map,
    integer,
    issue17_cycle_message,
    item,
    mutate,
    pick,
    string,
    text,
)


@dataclass(frozen=True)
class Target:
    name: str
    generate: Callable[[Chooser], bytes]
    run: Callable[[bytes], object]


def _one_of(ch: Chooser, *makers: Callable[[], bytes]) -> bytes:
    return makers[ch.integer(0, len(makers) - 1)]()


def _list_of(ch: Chooser, make: Callable[[], bytes], most: int = 3) -> bytes:
    count = ch.integer(0, most)
    return head(4, count) + b"".join(make() for _ in range(count))


def _uint(ch: Chooser) -> bytes:
    return _one_of(ch, lambda: head(0, ch.integer(0, 2_000_000_000)), lambda: integer(ch))


def _cose(protected: bytes, unprotected: bytes, payload: bytes, signature: bytes) -> bytes:
    return b"\xd2\x84" + bstr(protected) + unprotected + bstr(payload) + bstr(signature)


class _Fixture:
    """Keys, a registry and a scratch directory shared by the targets of one run."""

    def __init__(self) -> None:
        from edge.crypto.keys import device_id, key_id
        from edge.site.registry import Registry

        self.authority = SigningKey(b"\x01" * 32)
        self.authority_kid = key_id(self.authority.verify_key)
        self.keys = {self.authority_kid: self.authority.verify_key}
        self.device = SigningKey(b"\x02" * 32)
        self.device_id = device_id(self.device.verify_key)
        self.registry = Registry()
        self.registry.add("hq", self.device.verify_key)
        self.scratch = Path(tempfile.mkdtemp(prefix="edge-fuzz-"))


def _entry(ch: Chooser) -> bytes:
    return hostile_map(
        ch,
        {
            "subject": lambda: text(f"s-{ch.integer(0, 99)}"),
            "purposes": lambda: _list_of(ch, lambda: text("access:main-gate"), 2),
            "modalities": lambda: _list_of(ch, lambda: text(pick(ch, (b"face", b"fingerprint")).decode()), 2),
            "granted_at": lambda: _uint(ch),
            "expires_at": lambda: _one_of(ch, lambda: b"\xf6", lambda: _uint(ch)),
            "status": lambda: text(pick(ch, (b"active", b"withdrawn")).decode()),
            "credentials": lambda: _list_of(
                ch,
                lambda: hostile_map(ch, {"kind": lambda: text("card"), "digest": lambda: bstr(ch.raw(32))}),
                2,
            ),
        },
    )


def list_body(ch: Chooser) -> bytes:
    return hostile_map(
        ch,
        {
            "format": lambda: head(0, 1),
            "site": lambda: text("hq"),
            "kind": lambda: text(pick(ch, (b"snapshot", b"delta")).decode()),
            "version": lambda: _uint(ch),
            "base": lambda: _uint(ch),
            "issued_at": lambda: _uint(ch),
            "valid_until": lambda: _uint(ch),
            "entries": lambda: _list_of(ch, lambda: _entry(ch), 3),
            "remove": lambda: _list_of(ch, lambda: string(ch, 3), 2),
            "keys": lambda: hostile_map(
                ch,
                {
                    "successors": lambda: _list_of(ch, lambda: bstr(ch.raw(32)), 2),
                    "retire": lambda: _list_of(ch, lambda: bstr(ch.raw(8)), 2),
                },
            ),
        },
    )


def manifest_body(ch: Chooser) -> bytes:
    return hostile_map(
        ch,
        {
            "format": lambda: head(0, 1),
            "site": lambda: text("hq"),
            "version": lambda: _uint(ch),
            "list_sha256": lambda: bstr(ch.raw(32)),
            "list_size": lambda: _uint(ch),
            "chunks": lambda: _list_of(ch, lambda: bstr(ch.raw(32)), 3),
        },
    )


def event_payload(ch: Chooser, iss: str = "gw-0000000000000000", kind: str = "access") -> bytes:
    body = hostile_map(
        ch,
        {
            "decision": lambda: text("granted"),
            "modality": lambda: text("face"),
            "subject": lambda: _one_of(ch, lambda: b"\xf6", lambda: text("p-1")),
            "reason": lambda: text("matched"),
            "latency_ms": lambda: _uint(ch),
        },
    )
    return hostile_map(
        ch,
        {
            1: lambda: text(iss),
            6: lambda: _uint(ch),
            7: lambda: bstr(ch.raw(16)),
            "seq": lambda: _uint(ch),
            "kind": lambda: text(kind),
            "body": lambda: body,
        },
    )


def _signed(ch: Chooser, key: SigningKey, payload: bytes, aad: bytes, content_type: str | None) -> bytes:
    from edge.crypto.cose import sign1
    from edge.crypto.keys import key_id

    if ch.integer(0, 3) == 0:  # a hostile envelope around it instead
        protected = hostile_map(ch, {1: lambda: b"\x27", 4: lambda: bstr(key_id(key.verify_key))})
        return _cose(protected, pick(ch, (b"\xa0", item(ch, 1))), payload, ch.raw(64))
    message = sign1(key, key_id(key.verify_key), payload, aad, content_type=content_type)
    return mutate(ch, message) if ch.integer(0, 5) == 0 else message


def targets() -> list[Target]:
    from edge.audit.log import AuditLog, verify_export_bytes
    from edge.consent.chunks import MANIFEST_AAD, MANIFEST_CONTENT_TYPE, Reassembler, verify_manifest
    from edge.consent.listformat import decode_body
    from edge.consent.signing import CONTENT_TYPE, LIST_AAD, verify_list
    from edge.credentials.wiegand import decode as wiegand_decode
    from edge.crypto.cose import peek_kid, verify1
    from edge.events.envelope import decode_payload
    from edge.fingerprint.protocol import StreamParser, decode_frame
    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.transport import topics

    fx = _Fixture()
    good_list = bytes(
        cbor2.dumps(
            {
                "format": 1,
                "site": "hq",
                "kind": "snapshot",
                "version": 1,
                "issued_at": 1,
                "valid_until": 2,
                "entries": [],
            },
            canonical=True,
        )
    )

    # --- COSE_Sign1 envelopes (events, lists, manifests, audit heads)
    def gen_cose(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: item(ch),
            lambda: issue17_cycle_message() if ch.integer(0, 1) else mutate(ch, issue17_cycle_message()),
            lambda: b"\xd2" + item(ch),
            lambda: _cose(
                hostile_map(ch, {1: lambda: b"\x27", 4: lambda: bstr(fx.authority_kid), 3: lambda: text(CONTENT_TYPE)}),
                pick(ch, (b"\xa0", b"\xa1\x01\xd8\x1d\x00", item(ch, 1))),
                ch.raw(ch.integer(0, 40)),
                ch.raw(pick(ch, (b"\x40", b"\x3f", b"\x00"))[0]),
            ),
            lambda: mutate(ch, _signed(ch, fx.authority, good_list, LIST_AAD, CONTENT_TYPE)),
        )

    def run_cose(data: bytes) -> object:
        from edge.crypto.cose import CoseError

        with contextlib.suppress(CoseError):
            peek_kid(data)
        return verify1(data, fx.keys, LIST_AAD)

    # --- consent lists: the body, and the body behind the authority's signature
    def gen_list(ch: Chooser) -> bytes:
        body = _one_of(ch, lambda: list_body(ch), lambda: item(ch), lambda: mutate(ch, good_list))
        return _signed(ch, fx.authority, body, LIST_AAD, CONTENT_TYPE)

    def gen_body(ch: Chooser) -> bytes:
        return _one_of(ch, lambda: list_body(ch), lambda: item(ch), lambda: mutate(ch, good_list))

    # --- chunked lists: a manifest behind the signature, and what the reassembler is offered
    def gen_manifest(ch: Chooser) -> bytes:
        body = _one_of(ch, lambda: manifest_body(ch), lambda: item(ch))
        return _signed(ch, fx.authority, body, MANIFEST_AAD, MANIFEST_CONTENT_TYPE)

    def run_manifest(data: bytes) -> object:
        reassembler = Reassembler("hq", lambda: fx.keys, max_pending=4096)
        reassembler.offer(topics.consent("hq"), data)
        chunk = data[: len(data) // 2]
        reassembler.offer(topics.consent_chunk("hq", hashlib.sha256(chunk).digest()), chunk)
        reassembler.offer(topics.consent_chunks("hq") + data[:8].hex(), data)
        return verify_manifest(data, fx.keys)

    # --- events: the payload, and the verifier on a device's topic
    def gen_payload(ch: Chooser) -> bytes:
        return _one_of(ch, lambda: event_payload(ch, fx.device_id), lambda: item(ch))

    verifier = Verifier(fx.registry)
    topic = topics.for_event("hq", fx.device_id, "access")

    def gen_event(ch: Chooser) -> bytes:
        payload = gen_payload(ch)
        message = _signed(ch, fx.device, payload, topic.encode(), None)
        where = (
            topic
            if ch.integer(0, 7)
            else pick(ch, (b"sites/hq/x", b"sites/+/gates/#", topic.encode() + b"/x")).decode()
        )
        return where.encode() + b"\x00" + message

    def run_event(data: bytes) -> object:
        where, _, message = data.partition(b"\x00")
        return verifier.verify(where.decode(), message)

    # --- audit exports
    log = AuditLog.open(fx.scratch / "audit.sqlite3", fx.device)
    log.append("consent_rejected", {"reason": "malformed", "size": 3})
    log.append(
        "deletion", {"subject": "p-1", "deleted": {"g": {"templates": 1}}, "reason": "withdrawn", "list_version": 2}
    )
    log.export(fx.scratch / "audit.cbor")
    log.close()
    good_export = (fx.scratch / "audit.cbor").read_bytes()

    def gen_export(ch: Chooser) -> bytes:
        def record() -> bytes:
            return (
                head(4, 5)
                + _uint(ch)
                + pick(ch, (b"\xfb" + bytes(8), integer(ch)))
                + string(ch, 3)
                + item(ch, 1)
                + bstr(ch.raw(32))
            )

        doc = hostile_map(
            ch,
            {
                "format": lambda: text("gate-edge-audit/1"),
                "device_kid": lambda: bstr(ch.raw(8)),
                "records": lambda: _list_of(ch, record, 3),
                "head": lambda: _signed(ch, fx.device, item(ch), b"gate-edge/audit-head", "application/cbor"),
            },
        )
        return _one_of(ch, lambda: doc, lambda: mutate(ch, good_export), lambda: item(ch))

    public = fx.device.verify_key

    # --- EF01 frames and Wiegand bit frames
    good_frame = bytes.fromhex("EF01FFFFFFFF07000300000A")

    def gen_frame(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: ch.raw(ch.integer(0, 64)),
            lambda: mutate(ch, good_frame),
            lambda: bytes.fromhex("EF01FFFFFFFF") + ch.raw(ch.integer(0, 20)),
            lambda: good_frame * ch.integer(0, 3) + mutate(ch, good_frame),
        )

    def run_frame(data: bytes) -> object:
        list(StreamParser().feed(data))
        return decode_frame(data)

    def gen_bits(ch: Chooser) -> bytes:
        size = ch.integer(0, 80)
        return bytes(ch.integer(0, 1) if ch.integer(0, 15) else ch.integer(0, 255) for _ in range(size))

    def run_bits(data: bytes) -> object:
        return wiegand_decode(list(data))

    # --- config files and the device registry
    good_config = (
        b'version = 1\n[device]\nsite = "site-001"\nprofile = "sim"\nstate_dir = "/var/lib/gate-edge"\n'
        b'[mqtt]\nurl = "mqtts://broker.example:8883"\n'
    )
    hostile_lines = (
        b'profile = "a\\u0000b"\n',
        b"version = 99999999999999999999999\n",
        b"a = " + b"[" * 600 + b"]" * 600 + b"\n",
        b"[device]\nsite = 1e999\n",
        b"[[device]]\n",
        b'url = "mqtt://h:99999999"\n',
        b"\xff\xfe\n",
        b"grace_period_s = nan\n",
        b"[consent]\ngrace_period_s = -inf\n",
        b'[device]\nprofile = "/dev/zero"\n',
        b'[device]\nprofile = "' + b"../" * 40 + b'x"\n',
    )
    config_path = fx.scratch / "edge.toml"

    def gen_config(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: mutate(ch, good_config),
            lambda: good_config + pick(ch, hostile_lines),
            lambda: good_config.replace(b'"sim"', pick(ch, (b'"a\\u0000b"', b"1", b"[]", b'"' + b"x" * 300 + b'"'))),
            lambda: ch.raw(ch.integer(0, 64)),
        )

    def run_config(data: bytes) -> object:
        from edge.config.load import load_config

        config_path.write_bytes(data)
        return load_config(config_path)

    good_registry = Registry()
    good_registry.add("hq", fx.device.verify_key)
    registry_text = good_registry.to_json().encode()

    def gen_registry(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: mutate(ch, registry_text),
            lambda: b"[" * ch.integer(1, 5000),
            lambda: registry_text.replace(b'"hq"', pick(ch, (b"1", b"null", b'"a/b"', b"[]", b'"' + b"x" * 80 + b'"'))),
            lambda: registry_text.replace(
                b'"public_key": "', b'"public_key": ' + pick(ch, (b'1, "x": "', b'[], "x": "'))
            ),
            lambda: ch.raw(ch.integer(0, 64)),
        )

    def run_registry(data: bytes) -> object:
        return Registry.loads(data.decode("utf-8", errors="replace"))

    # --- roster files (the authority's CSV/JSON input)
    from edge.consent.authority import Authority

    authority_dir = Authority(fx.scratch / "authority")
    authority_dir.keygen("hq")
    good_csv = b"subject,purposes,modalities,granted_at,expires_at,status,card,pin\np-1,access:main-gate,face,,,active,0004123456,1234\n"
    good_json = (
        b'{"entries": [{"subject": "p-1", "purposes": "access:main-gate", "modalities": ["face"], "card": "12"}]}'
    )

    def gen_roster(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: b"c" + mutate(ch, good_csv),
            lambda: b"j" + mutate(ch, good_json),
            lambda: (
                b"j" + good_json.replace(b'"12"', pick(ch, (b"1e999", b"[1]", b"{}", b"null", b"-1", b'"\\u0000"')))
            ),
            lambda: b"j" + good_json.replace(b'"face"', pick(ch, (b"1", b"[]", b'"x" ' * 3))),
            lambda: b"j" + b"[" * ch.integer(1, 5000),
            lambda: b"c" + ch.raw(ch.integer(0, 64)),
        )

    def run_roster(data: bytes) -> object:
        path = fx.scratch / ("roster.json" if data[:1] == b"j" else "roster.csv")
        path.write_bytes(data[1:])
        return authority_dir.read_roster(path, now=1_800_000_000.0)

    # --- sealed template parcels between gates (edge.sync.parcel)
    from nacl.public import PrivateKey, SealedBox

    from edge.crypto.cose import sign1
    from edge.crypto.keys import device_id, key_id
    from edge.modality import Modality
    from edge.sync.parcel import Contents, SensorTemplate, open_parcel, parcel_topic, seal

    recipient_box = PrivateKey(b"\x03" * 32)
    recipient_id = device_id(SigningKey(b"\x04" * 32).verify_key)
    parcel_id = b"\x05" * 16
    parcel_topic_text = parcel_topic("hq", recipient_id, fx.device_id, parcel_id)
    parcel_aad = parcel_topic_text.encode()
    _, good_parcel = seal(
        Contents("p-1", Modality.fingerprint, 1, 1, fingerprint=SensorTemplate("r503", b"\x07" * 64)),
        site="hq",
        sender_key=fx.device,
        recipient=recipient_id,
        recipient_box_key=recipient_box.public_key,
        parcel_id=parcel_id,
        issued_at=2,
    )

    def _signed_parcel(payload: bytes) -> bytes:
        return sign1(fx.device, key_id(fx.device.verify_key), payload, parcel_aad, "application/gate-edge-parcel+cbor")

    def _inner(ch: Chooser) -> bytes:
        return hostile_map(
            ch,
            {
                "format": lambda: head(0, 1),
                "sender": lambda: text(fx.device_id),
                "recipient": lambda: text(recipient_id),
                "parcel": lambda: bstr(parcel_id),
                "subject": lambda: string(ch, 3),
                "modality": lambda: pick(ch, (text("face"), text("fingerprint"), text("iris"))),
                "enrolled_at": lambda: _uint(ch),
                "consent_version": lambda: _uint(ch),
                "face": lambda: item(ch),
                "fingerprint": lambda: item(ch),
            },
        )

    def _sealed_envelope(inner: bytes) -> bytes:
        outer = {
            "format": 1,
            "site": "hq",
            "sender": fx.device_id,
            "recipient": recipient_id,
            "parcel": parcel_id,
            "issued_at": 2,
            "sealed": bytes(SealedBox(recipient_box.public_key).encrypt(inner)),
        }
        return _signed_parcel(bytes(cbor2.dumps(outer, canonical=True)))

    def gen_parcel(ch: Chooser) -> bytes:
        return _one_of(
            ch,
            lambda: good_parcel,  # the first choice is the real parcel: the decoder must accept it
            lambda: mutate(ch, good_parcel),
            lambda: item(ch),
            lambda: _signed_parcel(item(ch)),
            lambda: _sealed_envelope(_inner(ch)),
            lambda: _sealed_envelope(item(ch)),
        )

    def run_parcel(data: bytes) -> object:
        return open_parcel(
            data,
            parcel_topic_text,
            site="hq",
            recipient_key=recipient_box,
            recipient=recipient_id,
            senders={fx.device_id: fx.device.verify_key},
        )

    return [
        Target("sync.parcel", gen_parcel, run_parcel),
        Target("cose.verify1", gen_cose, run_cose),
        Target("consent.verify_list", gen_list, lambda d: verify_list(d, fx.keys)),
        Target("consent.decode_body", gen_body, decode_body),
        Target("consent.manifest", gen_manifest, run_manifest),
        Target("events.decode_payload", gen_payload, decode_payload),
        Target("site.verifier", gen_event, run_event),
        Target("audit.export", gen_export, lambda d: verify_export_bytes(d, public)),
        Target("fingerprint.ef01", gen_frame, run_frame),
        Target("credentials.wiegand", gen_bits, run_bits),
        Target("config.load", gen_config, run_config),
        Target("site.registry", gen_registry, run_registry),
        Target("consent.roster", gen_roster, run_roster),
        *_osdp_targets(),
    ]


# --------------------------------------------------------------------------- OSDP byte streams


def osdp_crc(data: bytes) -> int:
    """OSDP's CRC-16 (CCITT polynomial, start 0x1D0F): only to make hostile frames that pass it."""
    crc = 0x1D0F
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


#: command code -> a data length libosdp accepts for it (so hostile values reach the command path)
OSDP_LENGTHS = {0x60: 0, 0x61: 1, 0x62: 1, 0x69: 14, 0x6A: 5, 0x68: 4, 0x6B: 6, 0x75: 18, 0x6E: 5, 0x76: 8, 0x77: 16}


def osdp_frame(ch: Chooser, seq: int = 0, address: int = 1, *, clean: bool = False) -> bytes:
    """One command frame with a correct CRC and hostile contents (code, sequence, security block, data)."""
    code = pick(ch, (*tuple(bytes([c]) for c in OSDP_LENGTHS), b"\x80", b"|", b"\x00"))
    size = OSDP_LENGTHS.get(code[0], 0)
    if code[0] == 0x6B:
        size += ch.integer(0, 40)
    data = (
        bytes(ch.integer(0, 9) for _ in range(size))
        if clean
        else _one_of(
            ch,
            lambda: bytes(ch.integer(0, 9) for _ in range(size)),  # small values: most get past the range checks
            lambda: ch.raw(size),
            lambda: ch.raw(ch.integer(0, 80)),
        )
    )
    body = code + data
    control = (seq if clean or ch.integer(0, 5) else ch.integer(0, 3)) | 0x04
    scb = b""
    if not clean and ch.integer(0, 5) == 0:
        control |= 0x08
        scb_len = ch.integer(2, 18)
        scb = bytes([scb_len, ch.integer(0x11, 0x18)]) + ch.raw(scb_len - 2)
    addr = address if clean or ch.integer(0, 4) else ch.integer(0, 255)
    length = 5 + len(scb) + len(body) + 2
    head = bytes([0x53, addr, length & 0xFF, length >> 8, control])
    frame = head + scb + body
    crc = osdp_crc(frame)
    frame += bytes([crc & 0xFF, crc >> 8])
    if not clean and ch.integer(0, 7) == 0:
        frame = mutate(ch, frame)
    return (b"\xff" if ch.integer(0, 1) else b"") + frame


def _osdp_stream(ch: Chooser, *, clean: bool = False) -> bytes:
    count = ch.integer(1, 8)
    return b"".join(osdp_frame(ch, seq=0 if i == 0 else 1 + (i - 1) % 3, clean=clean) for i in range(count))


def gen_osdp(ch: Chooser) -> bytes:
    """A mode byte (s: Secure Channel required, p: plain / install mode), then the stream."""
    mode = pick(ch, (b"s", b"p"))
    return mode + _one_of(
        ch,
        lambda: _osdp_stream(ch),
        lambda: _osdp_stream(ch, clean=True),
        lambda: ch.raw(ch.integer(0, 400)),
        lambda: b"\x53" * ch.integer(1, 3000),  # a start byte, again and again
        lambda: b"\x53\x01\xff\xff\x04" + ch.raw(ch.integer(0, 600)),  # declares 65535 bytes
        lambda: osdp_frame(ch) + ch.raw(ch.integer(0, 40)) + osdp_frame(ch),
    )


class _MemoryChannel:
    """A line that delivers ``data`` in pieces (as a UART would) and swallows the replies."""

    id = 0

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.written = 0

    def read(self, max_bytes: int) -> bytes:
        size = min(max_bytes, 1 + (self.pos * 7 + len(self.data)) % 23)
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        return None


def _osdp_targets() -> list[Target]:
    """The reader (libosdp PD behind the frame gate and the typed command path), fed hostile streams.
    Absent when libosdp is not installed."""
    try:
        import osdp_sys  # noqa: F401
    except ImportError:
        return []
    from edge.osdp.channel import FrameGate
    from edge.osdp.pd import OsdpPeripheral

    key = bytes(range(16))

    class GatedMemory(_MemoryChannel):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.gate = FrameGate(stale_s=0.01)
            self.now = 0.0  # a virtual clock: each read is 1 ms later

        def read(self, max_bytes: int) -> bytes:
            self.now += 0.001
            self.gate.feed(super().read(512), self.now)
            return self.gate.take(max_bytes, self.now)

    def run_osdp(data: bytes) -> object:
        secure = data[:1] == b"s"
        stream = data[1:]
        received: list[object] = []
        pd = OsdpPeripheral(
            GatedMemory(stream),
            address=1,
            scbk=key if secure else None,
            secure=secure,
            outputs=1,
            on_command=received.append,
            on_keyset=received.append,
            lib_log_level="emergency",
        )
        for _ in range(len(stream) // 8 + 16):  # bounded: the PD must return from every pass
            pd.step()
        state = pd.status()
        pd.close()
        return state

    return [Target("osdp.pd_stream", gen_osdp, run_osdp)]


def run_one(target: Target, data: bytes) -> str | None:
    """None when ``target`` returned or raised an ``EdgeError``; else the escaping exception's class."""
    from edge.errors import EdgeError

    try:
        target.run(data)
    except EdgeError:
        return None
    except Exception as exc:
        return exc.__class__.__name__
    return None
