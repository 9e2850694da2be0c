"""Keyed digests of credential values, so no card number, PIN or QR code is ever stored in clear.

The site's consent authority holds a 32-byte credential key and installs the same key on each of
its devices (``trust/consent-credential.key``, 0600). Lists carry
``BLAKE2b-256(key=site key, person="gate-edge/<kind>", data=normalised value)``; the device computes
the same digest when a credential is presented and looks it up. Without the key, a published list
reveals nothing about the values, not even a 4-digit PIN (no offline guessing). Pure module.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from edge.errors import ConsentError
from edge.modality import CREDENTIALS

KEY_SIZE = 32
KEY_FILE_NAME = "consent-credential.key"
KINDS: tuple[str, ...] = tuple(m.value for m in CREDENTIALS)

_CARD_RE = re.compile(r"[0-9A-F]{1,64}")
_PIN_RE = re.compile(r"[0-9]{4,12}")


class CredentialFormatError(ConsentError):
    """A credential value cannot be a card number, PIN or QR code. The value is never in the message."""

    def __init__(self, kind: str, expected: str) -> None:
        self.kind = kind
        super().__init__(f"{kind} credential rejected: expected {expected}")


def normalise(kind: str, value: str) -> str:
    """The canonical text of a value: card numbers are hex/decimal digits, upper case, no separators."""
    if kind == "card":
        text = re.sub(r"[\s:\-]", "", value).upper()
        if not _CARD_RE.fullmatch(text):
            raise CredentialFormatError(kind, "1-64 decimal or hex digits")
        return text.lstrip("0") or "0"
    if kind == "pin":
        text = value.strip()
        if not _PIN_RE.fullmatch(text):
            raise CredentialFormatError(kind, "4-12 digits")
        return text
    if kind == "qr":
        text = value.strip()
        if not 8 <= len(text) <= 512 or not text.isprintable():
            raise CredentialFormatError(kind, "8-512 printable characters")
        return text
    raise CredentialFormatError(kind, "a kind of card, pin or qr")


def credential_digest(site_key: bytes, kind: str, value: str) -> bytes:
    if len(site_key) != KEY_SIZE:
        raise ValueError("credential key must be 32 bytes")
    text = normalise(kind, value)
    person = f"gate-edge/{kind}".encode()
    return hashlib.blake2b(text.encode(), key=site_key, digest_size=32, person=person).digest()


def digests_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
