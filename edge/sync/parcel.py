"""Sealed template parcels between the gates of one site. Pure: keys and bytes in, bytes out.

A *parcel* carries one person's enrolment templates of one modality from a gate that holds them
(the sender) to one other gate of the same site (the recipient). Only the recipient can read it,
and the recipient knows which registered gate sent it. The broker and the site tools only ever
carry and see ciphertext.

Outer message: COSE_Sign1 signed by the sender's Ed25519 identity key (the key that signs its
events), content type ``application/gate-edge-parcel+cbor``, external AAD the MQTT topic
``sites/{site}/sync/{recipient}/{sender}/{parcel id, 32 hex}``, so a parcel copied to another
gate's, sender's or site's topic no longer verifies. Payload (canonical CBOR map)::

    format     1
    site       text
    sender     device id           the signer (its id is derived from the signing key)
    recipient  device id
    parcel     bytes 16            the parcel id (idempotency: a gate applies a parcel id once)
    issued_at  uint                seconds since the epoch
    sealed     bytes               crypto_box_seal(recipient's X25519 public key, inner)

Inner (sealed) map::

    format, sender, recipient, parcel      repeated: binds the ciphertext to this envelope, so
                                           another registered gate cannot strip the signature and
                                           re-sign the same ciphertext as its own, nor move it
    subject          text
    modality         "face" | "fingerprint"
    enrolled_at      uint               when the templates were captured
    consent_version  uint               the list version under which the sender enrolled
    face             {model: text, dim: uint, vectors: [bytes]}   float32 little-endian, unit
                                        length, *before* any gate's keyed transform
    fingerprint      {family: text, template: bytes}               the sensor's own char file
                                        (UpChar on the sender, DownChar on the recipient)

Why sign-then-seal is split this way: the sealed box hides the subject, modality and templates
from everyone but the recipient; the outer signature lets any gate or the verifier refuse a forged
parcel without decrypting; the repeated ids inside make the two one object.

Checks that need state (a parcel id already applied, consent in force for the subject, the sender
registered for this site, the template newer than the subject's consent grant) belong to the
receiving service, not here.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import cbor2
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from edge.crypto import strictcbor
from edge.crypto.cose import CoseError, sign1, verify1
from edge.crypto.keys import device_id, key_id
from edge.errors import IntegrityError
from edge.modality import BIOMETRIC, Modality

CONTENT_TYPE = "application/gate-edge-parcel+cbor"
FORMAT = 1
PARCEL_ID_SIZE = 16
#: the largest face template set and sensor template a parcel carries (a gallery keeps at most a
#: few templates per person; an R503 char file is 1536 bytes, two buffers 3072)
MAX_VECTORS = 32
MAX_DIM = 1024
MAX_SENSOR_TEMPLATE = 8192
#: outer and inner profiles: flat maps of short values, one list of vectors
OUTER = strictcbor.Profile(max_size=256 * 1024, max_depth=2, max_items=32)
INNER = strictcbor.Profile(max_size=192 * 1024, max_depth=4, max_items=128, floats=False)

_ID_RE = re.compile(r"gw-[0-9a-f]{16}")
_SITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
_SUBJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
_TEXT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+\-]{0,63}")
_MAX_UINT = 2**53 - 1


class ParcelError(IntegrityError):
    """A parcel was refused. ``reason`` is a short code for the audit log; nothing quotes the data."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"template parcel rejected: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class FaceTemplates:
    """Face embeddings as captured at enrolment, before any gate's keyed transform."""

    model: str
    dim: int
    vectors: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not _TEXT_RE.fullmatch(self.model):
            raise ParcelError("bad-template", "model id")
        if not 1 <= self.dim <= MAX_DIM:
            raise ParcelError("bad-template", "dimension")
        if not 1 <= len(self.vectors) <= MAX_VECTORS:
            raise ParcelError("bad-template", "vector count")
        for vector in self.vectors:
            if len(vector) != 4 * self.dim:
                raise ParcelError("bad-template", "vector length")
            values = struct.unpack(f"<{self.dim}f", vector)
            if not all(math.isfinite(v) for v in values):
                raise ParcelError("bad-template", "not finite")
            norm = math.sqrt(math.fsum(v * v for v in values))
            if abs(norm - 1.0) > 1e-3:  # the gallery stores unit vectors; float32 rounding is ~1e-7
                raise ParcelError("bad-template", "not unit length")


@dataclass(frozen=True)
class SensorTemplate:
    """A fingerprint module's own template bytes (its char file), for DownChar on the recipient."""

    family: str
    template: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _TEXT_RE.fullmatch(self.family):
            raise ParcelError("bad-template", "sensor family")
        if not 1 <= len(self.template) <= MAX_SENSOR_TEMPLATE:
            raise ParcelError("bad-template", "sensor template size")


@dataclass(frozen=True)
class Contents:
    """What the recipient learns once the parcel is open."""

    subject: str = field(repr=False)
    modality: Modality
    enrolled_at: int
    consent_version: int
    face: FaceTemplates | None = None
    fingerprint: SensorTemplate | None = None

    def __post_init__(self) -> None:
        if not _SUBJECT_RE.fullmatch(self.subject):
            raise ParcelError("bad-contents", "subject id")
        if self.modality == "face":
            if self.face is None or self.fingerprint is not None:
                raise ParcelError("bad-contents", "a face parcel carries face templates only")
        elif self.modality == "fingerprint":
            if self.fingerprint is None or self.face is not None:
                raise ParcelError("bad-contents", "a fingerprint parcel carries a sensor template only")
        else:
            raise ParcelError("bad-contents", "modality")
        for value in (self.enrolled_at, self.consent_version):
            if not 0 <= value <= _MAX_UINT:
                raise ParcelError("bad-contents", "time or version out of range")


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted parcel: who sent it, its id and time, and its contents."""

    site: str
    sender: str
    recipient: str
    parcel_id: bytes
    issued_at: int
    contents: Contents


def _level(what: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise ParcelError("bad-address", f"{what} is not a valid id")
    return value


def parcel_topic(site: str, recipient: str, sender: str, parcel_id: bytes) -> str:
    """Where a parcel travels (retained, QoS 1); the signature's external AAD."""
    if len(parcel_id) != PARCEL_ID_SIZE:
        raise ParcelError("bad-address", "parcel id size")
    return "/".join(
        (
            "sites",
            _level("site", site, _SITE_RE),
            "sync",
            _level("recipient", recipient, _ID_RE),
            _level("sender", sender, _ID_RE),
            parcel_id.hex(),
        )
    )


def inbox_filter(site: str, recipient: str) -> str:
    """The recipient's subscription: every parcel addressed to it, from any sender."""
    return f"sites/{_level('site', site, _SITE_RE)}/sync/{_level('recipient', recipient, _ID_RE)}/+/+"


def _inner(contents: Contents, sender: str, recipient: str, parcel_id: bytes) -> bytes:
    body: dict[str, object] = {
        "format": FORMAT,
        "sender": sender,
        "recipient": recipient,
        "parcel": parcel_id,
        "subject": contents.subject,
        "modality": str(contents.modality),
        "enrolled_at": contents.enrolled_at,
        "consent_version": contents.consent_version,
    }
    if contents.face is not None:
        body["face"] = {"model": contents.face.model, "dim": contents.face.dim, "vectors": list(contents.face.vectors)}
    if contents.fingerprint is not None:
        body["fingerprint"] = {"family": contents.fingerprint.family, "template": contents.fingerprint.template}
    return bytes(cbor2.dumps(body, canonical=True))


def seal(
    contents: Contents,
    *,
    site: str,
    sender_key: SigningKey,
    recipient: str,
    recipient_box_key: PublicKey,
    parcel_id: bytes,
    issued_at: int,
) -> tuple[str, bytes]:
    """The topic and the signed, sealed parcel for one recipient."""
    sender = device_id(sender_key.verify_key)
    topic = parcel_topic(site, recipient, sender, parcel_id)
    if recipient == sender:
        raise ParcelError("bad-address", "a gate does not send parcels to itself")
    if not 0 <= issued_at <= _MAX_UINT:
        raise ParcelError("bad-contents", "issue time out of range")
    sealed = SealedBox(recipient_box_key).encrypt(_inner(contents, sender, recipient, parcel_id))
    outer = {
        "format": FORMAT,
        "site": site,
        "sender": sender,
        "recipient": recipient,
        "parcel": parcel_id,
        "issued_at": issued_at,
        "sealed": bytes(sealed),
    }
    payload = bytes(cbor2.dumps(outer, canonical=True))
    return topic, sign1(sender_key, key_id(sender_key.verify_key), payload, topic.encode(), CONTENT_TYPE)


def _map(value: object, keys: frozenset[str], what: str) -> Mapping[str, object]:
    if not isinstance(value, dict) or set(value) != keys:
        raise ParcelError("malformed", f"{what} must hold exactly its documented keys")
    return value


def _uint(body: Mapping[str, object], key: str) -> int:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_UINT:
        raise ParcelError("malformed", f"{key} must be an unsigned integer")
    return value


def _text(body: Mapping[str, object], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise ParcelError("malformed", f"{key} must be text")
    return value


def _bytes(body: Mapping[str, object], key: str) -> bytes:
    value = body[key]
    if not isinstance(value, bytes):
        raise ParcelError("malformed", f"{key} must be bytes")
    return value


_OUTER_KEYS = frozenset({"format", "site", "sender", "recipient", "parcel", "issued_at", "sealed"})
_INNER_BASE = frozenset(
    {"format", "sender", "recipient", "parcel", "subject", "modality", "enrolled_at", "consent_version"}
)


def _decode_contents(raw: bytes) -> tuple[Mapping[str, object], Contents]:
    try:
        value = strictcbor.loads(raw, INNER)
    except strictcbor.CborProfileError as exc:
        raise ParcelError("malformed", f"sealed contents: {exc.reason}") from None
    if not isinstance(value, dict):
        raise ParcelError("malformed", "sealed contents must be a map")
    modality = value.get("modality")
    if not isinstance(modality, str) or modality not in BIOMETRIC:
        raise ParcelError("bad-contents", "modality")
    body = _map(value, _INNER_BASE | {modality}, "sealed contents")
    face: FaceTemplates | None = None
    finger: SensorTemplate | None = None
    if modality == "face":
        part = _map(body["face"], frozenset({"model", "dim", "vectors"}), "face templates")
        vectors = part["vectors"]
        if not isinstance(vectors, list) or not all(isinstance(v, bytes) for v in vectors):
            raise ParcelError("malformed", "face vectors must be a list of byte strings")
        face = FaceTemplates(_text(part, "model"), _uint(part, "dim"), tuple(vectors))
    else:
        part = _map(body["fingerprint"], frozenset({"family", "template"}), "sensor template")
        finger = SensorTemplate(_text(part, "family"), _bytes(part, "template"))
    contents = Contents(
        subject=_text(body, "subject"),
        modality=Modality(modality),
        enrolled_at=_uint(body, "enrolled_at"),
        consent_version=_uint(body, "consent_version"),
        face=face,
        fingerprint=finger,
    )
    return body, contents


def open_parcel(
    message: bytes,
    topic: str,
    *,
    site: str,
    recipient_key: PrivateKey,
    recipient: str,
    senders: Mapping[str, VerifyKey],
) -> Opened:
    """Verify and open a parcel addressed to ``recipient``; raises ``ParcelError`` only.

    ``senders``: the registered gates of this site (device id -> identity public key). A parcel
    from any other key, for another site or gate, on another topic, or altered is refused.
    """
    by_kid = {key_id(k): (dev, k) for dev, k in senders.items()}
    try:
        signed = verify1(bytes(message), {kid: k for kid, (_, k) in by_kid.items()}, topic.encode())
    except CoseError as exc:
        if exc.reason.startswith("unknown key id"):
            raise ParcelError("unknown-sender") from None
        raise ParcelError("bad-signature" if exc.reason == "bad signature" else "malformed", exc.reason) from None
    if signed.protected.get(3) != CONTENT_TYPE:
        raise ParcelError("malformed", "not a template parcel")
    try:
        value = strictcbor.loads(signed.payload, OUTER)
    except strictcbor.CborProfileError as exc:
        raise ParcelError("malformed", exc.reason) from None
    outer = _map(value, _OUTER_KEYS, "parcel")
    if _uint(outer, "format") != FORMAT:
        raise ParcelError("malformed", "unknown parcel format")
    sender, to, parcel_id = _text(outer, "sender"), _text(outer, "recipient"), _bytes(outer, "parcel")
    if _text(outer, "site") != site:
        raise ParcelError("wrong-site")
    if to != recipient:
        raise ParcelError("wrong-recipient")
    registered, signer_key = by_kid[signed.kid]
    if sender != device_id(signer_key) or sender != registered:
        raise ParcelError("sender-mismatch", "the envelope names another gate than its signer")
    if len(parcel_id) != PARCEL_ID_SIZE or topic != parcel_topic(site, recipient, sender, parcel_id):
        raise ParcelError("malformed", "the topic does not name this parcel")
    try:
        raw = SealedBox(recipient_key).decrypt(_bytes(outer, "sealed"))
    except CryptoError:
        raise ParcelError("not-for-us", "sealed for another key") from None
    inner, contents = _decode_contents(bytes(raw))
    if (
        _uint(inner, "format") != FORMAT
        or inner["sender"] != sender
        or inner["recipient"] != recipient
        or inner["parcel"] != parcel_id
    ):
        raise ParcelError("sender-mismatch", "the sealed contents belong to another envelope")
    return Opened(site, sender, recipient, parcel_id, _uint(outer, "issued_at"), contents)
