"""Consent lists as COSE_Sign1 messages: the authority signs a body, the device verifies it. Pure.

The signature binds the external AAD ``gate-edge/consent-list`` so a list can never be confused
with another message signed by the same key (an event, an audit head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from edge.consent.listformat import ConsentList, Entry, ListFormatError, decode_body, encode_body
from edge.crypto.cose import CoseError, sign1, verify1
from edge.crypto.keys import key_id
from edge.errors import ConsentError

LIST_AAD = b"gate-edge/consent-list"
#: The largest step a list's version may take above the version in force. The authority adds 1
#: per list, so this is 100 000 lists missed by a device (one an hour for eleven years). A larger
#: jump is a mistaken or hostile issue that would make every later list look like a rollback.
MAX_VERSION_STEP = 100_000
#: The largest version at all (exact in a JSON number and a SQLite integer, far from 2**63 - 1).
MAX_VERSION = 2**53 - 1
CONTENT_TYPE = "application/gate-edge-consent+cbor"


class ListRejected(ConsentError):  # noqa: N818 - the name other components call
    """A consent list was refused. ``reason`` is one of ``REASONS``; the message never names a subject.

    Reasons: ``malformed`` (not a COSE_Sign1 message), ``unknown-key`` (no pinned key has its key
    id), ``bad-signature``, ``bad-algorithm``, ``malformed-body`` (signed, but not a valid list),
    ``wrong-site``, ``rollback`` (older than the list in force), ``replay`` (same version, other
    bytes), ``delta-base`` (a delta for a version the device does not hold), ``not-yet-valid``,
    ``expired``, ``bad-key-announcement`` (a list retiring the key that signed it).
    """

    REASONS = frozenset(
        {
            "malformed",
            "unknown-key",
            "bad-signature",
            "bad-algorithm",
            "malformed-body",
            "wrong-site",
            "rollback",
            "replay",
            "version-jump",
            "delta-base",
            "not-yet-valid",
            "expired",
            "bad-key-announcement",
            "oversize",
        }
    )

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in self.REASONS, reason
        self.reason = reason
        self.detail = detail
        super().__init__(f"consent list rejected ({reason}): {detail}")


def sign_list(key: SigningKey, lst: ConsentList) -> bytes:
    return sign1(key, key_id(key.verify_key), encode_body(lst), LIST_AAD, content_type=CONTENT_TYPE)


def verify_list(
    message: bytes, keys: dict[bytes, VerifyKey], known: Mapping[str, tuple[dict[str, Any], Entry]] | None = None
) -> tuple[ConsentList, bytes]:
    """The verified list and the key id that signed it; raises ``ListRejected``."""
    try:
        signed = verify1(message, keys, LIST_AAD)
    except CoseError as exc:
        if exc.reason.startswith("unknown key id"):
            raise ListRejected("unknown-key", "signed by a key that is not pinned on this device") from None
        if exc.reason == "bad signature":
            raise ListRejected("bad-signature", "the signature does not verify (altered or forged)") from None
        if exc.reason == "algorithm is not EdDSA":
            raise ListRejected("bad-algorithm", "the list is not signed with EdDSA") from None
        raise ListRejected("malformed", exc.reason) from None
    if signed.protected.get(3) != CONTENT_TYPE:
        raise ListRejected("malformed-body", "the signed message is not a consent list")
    try:
        return decode_body(signed.payload, known), signed.kid
    except ListFormatError as exc:
        raise ListRejected("malformed-body", exc.reason) from None
