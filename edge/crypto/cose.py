"""COSE_Sign1 (RFC 9052) with EdDSA/Ed25519, as a pure codec over bytes.

Used for consent lists (signed by the site authority) and for every event the device publishes.
Verification is strict: the protected header must name EdDSA and the expected key id, the CBOR must
be the exact tagged four-element structure, and the signature must cover the external AAD the
caller binds (the MQTT topic for events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge.crypto import strictcbor
from edge.errors import IntegrityError

COSE_SIGN1_TAG = 18
HDR_ALG = 1
HDR_KID = 4
HDR_CONTENT_TYPE = 3
ALG_EDDSA = -8


class CoseError(IntegrityError):
    """A COSE message is malformed, unsigned by the expected key, or altered."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"signed message rejected: {reason}")


@dataclass(frozen=True)
class Sign1:
    protected: dict[int, Any]
    payload: bytes
    kid: bytes


def _sig_structure(protected: bytes, external_aad: bytes, payload: bytes) -> bytes:
    return bytes(cbor2.dumps(["Signature1", protected, external_aad, payload]))


def sign1(
    key: SigningKey, kid: bytes, payload: bytes, external_aad: bytes = b"", content_type: str | None = None
) -> bytes:
    """Sign ``payload``; the result is a tagged COSE_Sign1 message."""
    header: dict[int, Any] = {HDR_ALG: ALG_EDDSA, HDR_KID: kid}
    if content_type:
        header[HDR_CONTENT_TYPE] = content_type
    protected = bytes(cbor2.dumps(header))
    signature = key.sign(_sig_structure(protected, external_aad, payload)).signature
    return bytes(cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature])))


def peek_kid(message: bytes) -> bytes:
    """The key id from the protected header, without verifying (to choose the key)."""
    protected, _, _, _ = _parse(message)
    kid = protected.get(HDR_KID)
    if not isinstance(kid, bytes):
        raise CoseError("no key id in the protected header")
    return kid


def peek_protected(message: bytes) -> dict[int, Any]:
    """The protected header, without verifying (e.g. to tell a manifest from a list)."""
    return _parse(message)[0]


def peek_payload(message: bytes) -> tuple[dict[int, Any], bytes]:
    """The protected header and payload, without verifying (the signer's own tools only)."""
    protected, _, payload, _ = _parse(message)
    return protected, payload


def _parse(message: bytes) -> tuple[dict[int, Any], bytes, bytes, bytes]:
    """The checked parts of a COSE_Sign1 message; raises ``CoseError`` and nothing else.

    The envelope is scanned against a strict CBOR profile before it is decoded (``strictcbor``):
    no tag but the top-level 18, no indefinite lengths, no non-shortest heads, no duplicate keys,
    nothing deeper than the envelope needs. So there is exactly one encoding of each message, and
    nothing that reaches the rest of this function can be a cycle or an unexpected type.
    """
    try:
        decoded = strictcbor.loads(message, strictcbor.COSE)
    except strictcbor.CborProfileError as exc:
        raise CoseError(f"not CBOR (strict profile for COSE_Sign1: {exc.reason})") from None
    if not isinstance(decoded, cbor2.CBORTag) or decoded.tag != COSE_SIGN1_TAG:
        raise CoseError("not a tagged COSE_Sign1 message")
    value = decoded.value
    if not isinstance(value, list) or len(value) != 4:
        raise CoseError("COSE_Sign1 must be an array of four elements")
    protected_bytes, unprotected, payload, signature = value
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, dict):
        raise CoseError("malformed headers")
    if unprotected:
        raise CoseError("unprotected headers are not used by this product")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
        raise CoseError("malformed payload or signature")
    if not protected_bytes:
        raise CoseError("empty protected header")
    try:
        protected = strictcbor.loads(protected_bytes, strictcbor.HEADER)
    except strictcbor.CborProfileError as exc:
        raise CoseError(f"protected header is not CBOR (strict profile: {exc.reason})") from None
    if not isinstance(protected, dict) or not all(isinstance(k, int) for k in protected):
        raise CoseError("protected header is not a map with integer labels")
    return protected, protected_bytes, payload, signature


def verify1(message: bytes, keys: dict[bytes, VerifyKey], external_aad: bytes = b"") -> Sign1:
    """Verify ``message`` against the key its kid names in ``keys``; return the payload."""
    protected, protected_bytes, payload, signature = _parse(message)
    if protected.get(HDR_ALG) != ALG_EDDSA:
        raise CoseError("algorithm is not EdDSA")
    kid = protected.get(HDR_KID)
    if not isinstance(kid, bytes):
        raise CoseError("no key id in the protected header")
    key = keys.get(kid)
    if key is None:
        raise CoseError(f"unknown key id {kid.hex()}")
    try:
        key.verify(_sig_structure(protected_bytes, external_aad, payload), signature)
    except BadSignatureError:
        raise CoseError("bad signature") from None
    except Exception as exc:  # PyNaCl raises others on a malformed key or signature: still a refusal
        raise CoseError(f"signature check failed ({exc.__class__.__name__})") from None
    return Sign1(protected=protected, payload=payload, kid=kid)
