"""The signed event envelope (pure apart from the clock and the random cti).

An event on the wire is a COSE_Sign1 message (``edge.crypto.cose``) signed with the device's
Ed25519 key: protected header ``{1: -8 (EdDSA), 4: kid}``, the MQTT topic bound as external AAD,
and a CBOR map payload with CWT claims plus the event itself::

    { 1: iss (device id), 6: iat (unix seconds), 7: cti (16 random bytes),
      "seq": per-device sequence number (1, 2, 3 ... persisted across restarts),
      "kind": event kind, "body": { fields of the kind's schema } }

The body passes the egress guard before it is signed; the verifier runs the same schema check.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import cbor2
from nacl.signing import SigningKey

from edge.crypto import strictcbor
from edge.crypto.cose import ALG_EDDSA, COSE_SIGN1_TAG, HDR_ALG, HDR_KID
from edge.crypto.keys import key_id
from edge.errors import IntegrityError
from edge.events.guard import AuditLog, CheckedBody, check
from edge.events.schema import SchemaViolation, validate

CLAIM_ISS = 1
CLAIM_IAT = 6
CLAIM_CTI = 7
CTI_BYTES = 16
#: The largest iat and seq (2**53 - 1: exact in a JSON number, as the verifier writes them).
MAX_COUNTER = 2**53 - 1
PAYLOAD_KEYS = frozenset({CLAIM_ISS, CLAIM_IAT, CLAIM_CTI, "seq", "kind", "body"})


class SeqStore(Protocol):
    def next_seq(self) -> int:
        """Allocate the next sequence number (1 for the first event) and persist it."""


class MemorySeqStore:
    """A sequence counter that does not survive a restart (tests only)."""

    def __init__(self, start: int = 0) -> None:
        self._lock = threading.Lock()
        self._last = start

    def next_seq(self) -> int:
        with self._lock:
            self._last += 1
            return self._last


@dataclass(frozen=True)
class EventClaims:
    iss: str
    iat: int
    cti: bytes
    seq: int
    kind: str
    body: dict[str, object]


class PayloadError(IntegrityError):
    """A signed payload does not have the event structure."""


def encode_payload(claims: EventClaims) -> bytes:
    """The payload in canonical CBOR (RFC 7049 section 3.9 key order), byte-identical to
    ``cbor2.dumps(..., canonical=True)`` (tested), written directly because it is on the hot path."""
    out = [
        b"\xa6",
        b"\x01",
        _text(claims.iss),
        b"\x06",
        _uint(claims.iat),
        b"\x07",
        _bstr(claims.cti),
        b"\x63seq",
        _uint(claims.seq),
        b"\x64body",
        _value_map(claims.body),
        b"\x64kind",
        _text(claims.kind),
    ]
    return b"".join(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _head(3, len(raw)) + raw


def _uint(value: int) -> bytes:
    return _head(0, value)


def _value(value: object) -> bytes:
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, (list, tuple)):
        return _head(4, len(value)) + b"".join(_value(v) for v in value)
    if isinstance(value, dict):
        return _value_map(value)
    return bytes(cbor2.dumps(value, canonical=True))  # floats: cbor2 picks the shortest exact form


def _value_map(mapping: Mapping[str, object]) -> bytes:
    items = sorted((_text(k), _value(v)) for k, v in mapping.items())
    items.sort(key=lambda kv: len(kv[0]))  # canonical: shorter keys first, then bytewise (stable sort)
    return _head(5, len(items)) + b"".join(k + v for k, v in items)


def decode_payload(payload: bytes) -> EventClaims:
    """Parse and check an event payload strictly (claims, types, and the body's schema)."""
    try:
        data = strictcbor.loads(payload, strictcbor.EVENT)
    except strictcbor.CborProfileError as exc:
        raise PayloadError(f"event payload is not CBOR (strict profile: {exc.reason})") from None
    if not isinstance(data, dict) or set(data) != PAYLOAD_KEYS:
        raise PayloadError("event payload must hold exactly iss, iat, cti, seq, kind, body")
    iss, iat, cti, seq, kind, body = (data[k] for k in (CLAIM_ISS, CLAIM_IAT, CLAIM_CTI, "seq", "kind", "body"))
    if not isinstance(iss, str) or not isinstance(kind, str):
        raise PayloadError("iss and kind must be text")
    if isinstance(iat, bool) or not isinstance(iat, int) or not 0 <= iat <= MAX_COUNTER:
        raise PayloadError(f"iat must be an integer in 0..{MAX_COUNTER}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_COUNTER:
        raise PayloadError(f"seq must be an integer in 1..{MAX_COUNTER}")
    if not isinstance(cti, bytes) or len(cti) != CTI_BYTES:
        raise PayloadError(f"cti must be {CTI_BYTES} bytes")
    try:
        clean = validate(kind, body)
    except SchemaViolation as exc:
        raise PayloadError(f"event body breaks the schema: {exc}") from None
    return EventClaims(iss=iss, iat=iat, cti=cti, seq=seq, kind=kind, body=clean)


class EventSigner:
    """Guards, numbers and signs event bodies for one device."""

    def __init__(
        self,
        signing_key: SigningKey,
        device_id: str,
        seq_store: SeqStore,
        *,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_key = signing_key
        self.device_id = device_id
        self.seq_store = seq_store
        self.audit = audit
        self.clock = clock
        self.kid = key_id(signing_key.verify_key)
        self._protected = bytes(cbor2.dumps({HDR_ALG: ALG_EDDSA, HDR_KID: self.kid}))

    def sign(self, topic: str, kind: str, body: Mapping[str, object]) -> bytes:
        """Guard ``body``, take the next sequence number, sign with ``topic`` as external AAD."""
        clean = check(kind, body, audit=self.audit)
        return self._sign(topic, kind, clean, self.seq_store.next_seq())

    def sign_with_seq(self, topic: str, kind: str, clean: CheckedBody, seq: int) -> bytes:
        """As ``sign``, for a body the guard already passed (``check`` returns ``CheckedBody``), with a
        sequence number the caller allocated (the outbox does, atomically). The guard runs once."""
        return self._sign(topic, kind, clean, seq)

    def _sign(self, topic: str, kind: str, clean: dict[str, object], seq: int) -> bytes:
        claims = EventClaims(
            iss=self.device_id, iat=int(self.clock()), cti=os.urandom(CTI_BYTES), seq=seq, kind=kind, body=clean
        )
        return fast_sign1(self.signing_key, self._protected, encode_payload(claims), topic.encode())


def _head(major: int, length: int) -> bytes:
    """A CBOR item head in its shortest form (RFC 8949 section 3)."""
    if length < 24:
        return bytes([major << 5 | length])
    if length < 0x100:
        return bytes([major << 5 | 24, length])
    if length < 0x10000:
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")
    if length < 0x100000000:
        return bytes([major << 5 | 26]) + length.to_bytes(4, "big")
    return bytes([major << 5 | 27]) + length.to_bytes(8, "big")


def _bstr(data: bytes) -> bytes:
    return _head(2, len(data)) + data


_SIGNATURE1 = b"\x84" + bytes([0x60 | len(b"Signature1")]) + b"Signature1"  # ["Signature1", ...]
_SIGN1_HEAD = _head(6, COSE_SIGN1_TAG) + b"\x84"  # tag 18, array of 4


def fast_sign1(key: SigningKey, protected: bytes, payload: bytes, external_aad: bytes) -> bytes:
    """``edge.crypto.cose.sign1`` with the fixed CBOR framing written directly (byte-identical, tested).

    Signing is on the gate's hot path; encoding the four small fixed structures with cbor2 cost more
    than the Ed25519 signature itself.
    """
    to_sign = _SIGNATURE1 + _bstr(protected) + _bstr(external_aad) + _bstr(payload)
    signature = key.sign(to_sign).signature
    return _SIGN1_HEAD + _bstr(protected) + b"\xa0" + _bstr(payload) + _bstr(signature)
