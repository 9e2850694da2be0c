"""The reference event verifier: signature, topic binding, schema and replay checks.

``Verifier.verify(topic, payload)`` accepts an event only if its topic names a registered device on
its registered site, the COSE_Sign1 signature verifies with that device's key over the payload and
the topic (external AAD), the payload's iss and kind match the topic, the body matches the schema,
and neither its cti nor its sequence number was seen before. Replay state keeps, per device, the
highest sequence number and the numbers seen within ``window`` below it (out-of-order arrivals
within the window are accepted once), plus every cti of that window.

``verify`` is total: any input gives a ``VerifiedEvent`` or raises ``Rejected`` (the reasons are
listed in docs/mqtt.md); a payload over ``MAX_EVENT_BYTES`` is refused before anything decodes it,
and a sequence number more than ``MAX_SEQ_STEP`` above the highest one seen from that device is
refused (``seq_jump``) instead of moving the replay window there: one absurd number, from a faulty
or compromised device, would otherwise make every later event of that device look like a replay.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field

from edge.crypto.cose import CoseError, peek_kid, verify1
from edge.errors import IntegrityError, TransportError
from edge.events.envelope import PayloadError, decode_payload
from edge.site.registry import Registry
from edge.transport.topics import parse_event

#: The largest payload an event may have (events are about 230 bytes; the broker allows 1 MiB).
MAX_EVENT_BYTES = 64 * 1024
#: The largest step a device's sequence number may take above the highest seen from it. A gate
#: emitting 10 events a second without pause for 11 days stays below it; the device's outbox holds
#: at most 100 000 events by default.
MAX_SEQ_STEP = 10_000_000


class Rejected(IntegrityError):  # noqa: N818 - reads as what it is
    """An event failed verification; ``reason`` is a short code (bad_signature, replay, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"event rejected ({reason}): {detail}")


@dataclass(frozen=True)
class VerifiedEvent:
    topic: str
    site: str
    device_id: str
    kind: str
    seq: int
    iat: int
    cti: bytes
    body: dict[str, object]

    def to_json(self) -> str:
        record = {
            "site": self.site,
            "device": self.device_id,
            "kind": self.kind,
            "seq": self.seq,
            "iat": self.iat,
            "cti": self.cti.hex(),
            "topic": self.topic,
            "body": self.body,
        }
        return json.dumps(record, sort_keys=True, separators=(",", ":"))


@dataclass
class _DeviceState:
    highest: int = 0
    seen: set[int] = field(default_factory=set)
    ctis: dict[bytes, int] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)


class Verifier:
    def __init__(self, registry: Registry, *, window: int = 4096) -> None:
        self.registry = registry
        self.window = window
        self._lock = threading.Lock()
        self._state: dict[str, _DeviceState] = {}

    def verify(self, topic: str, payload: bytes) -> VerifiedEvent:
        """The verified event, or ``Rejected`` with a reason code; never any other exception."""
        if len(payload) > MAX_EVENT_BYTES:
            raise Rejected("oversize", f"{len(payload)} bytes, more than the {MAX_EVENT_BYTES} an event may have")
        try:
            return self._verify(topic, bytes(payload))
        except Rejected:
            raise
        except Exception as exc:  # a verifier bug must not stop the site's verification
            raise Rejected(
                "internal_error", f"the verifier failed on this message ({exc.__class__.__name__})"
            ) from None

    def _verify(self, topic: str, payload: bytes) -> VerifiedEvent:
        try:
            where = parse_event(topic)
        except TransportError as exc:
            raise Rejected("topic", str(exc)) from None
        device = self.registry.get(where.device_id)
        if device is None:
            raise Rejected("unknown_device", f"device {where.device_id} is not in the registry")
        if device.site != where.site:
            raise Rejected("wrong_site", f"device {where.device_id} is registered on another site")
        try:
            kid = peek_kid(payload)
            if kid != device.kid:
                raise Rejected("wrong_key", f"key id {kid.hex()} is not the key of {where.device_id}")
            signed = verify1(payload, {device.kid: device.public_key}, topic.encode())
        except CoseError as exc:
            raise Rejected("bad_signature", f"{exc.reason} (for this topic and device key)") from None
        try:
            claims = decode_payload(signed.payload)
        except PayloadError as exc:
            raise Rejected("malformed", str(exc)) from None
        if claims.iss != where.device_id:
            raise Rejected("wrong_topic", "the signed issuer is not the device in the topic")
        if claims.kind != where.kind:
            raise Rejected("wrong_topic", "the signed event kind is not the kind in the topic")
        with self._lock:
            state = self._state.setdefault(where.device_id, _DeviceState())
            if claims.cti in state.ctis:
                raise Rejected("replay", f"cti already seen (seq {claims.seq})")
            if claims.seq in state.seen or claims.seq <= state.highest - self.window:
                raise Rejected("replay", f"sequence number {claims.seq} already seen or too old")
            if state.highest and claims.seq > state.highest + MAX_SEQ_STEP:
                raise Rejected(
                    "seq_jump",
                    f"sequence number {claims.seq} is more than {MAX_SEQ_STEP} above the highest seen ({state.highest})",
                )
            self._record(state, claims.seq, claims.cti)
        return VerifiedEvent(
            topic=topic,
            site=where.site,
            device_id=where.device_id,
            kind=claims.kind,
            seq=claims.seq,
            iat=claims.iat,
            cti=claims.cti,
            body=claims.body,
        )

    def _record(self, state: _DeviceState, seq: int, cti: bytes) -> None:
        state.seen.add(seq)
        state.ctis[cti] = seq
        state.order.append(seq)
        state.highest = max(state.highest, seq)
        floor = state.highest - self.window
        while state.order and (state.order[0] <= floor or len(state.order) > 4 * self.window):
            old = state.order.popleft()
            state.seen.discard(old)
        if len(state.ctis) > 4 * self.window:
            for old_cti in [c for c, s in state.ctis.items() if s <= floor]:
                del state.ctis[old_cti]
