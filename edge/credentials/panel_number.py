"""The number a site's access panel knows a person by, sealed so only the site's gates read it. Pure.

In reader mode (OSDP, Wiegand out) the gate tells the panel *who* it recognised by sending the
panel credential the authority assigned to that person. That number is an access credential: the
signed consent list carries it sealed with a key derived from the site credential key every gate
already holds (``trust/consent-credential.key``), never in clear, and bound to the subject it was
issued for (a sealed number copied to another entry does not open). Nothing here logs or prints it.

Sealed form: ``nonce (24) || XSalsa20-Poly1305(key, CBOR [subject, number])`` with
``key = BLAKE2b-256(key=site key, person="gate-edge/panel")``.
"""

from __future__ import annotations

import hashlib

import cbor2
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from edge.credentials.hashing import KEY_SIZE
from edge.crypto import strictcbor
from edge.errors import IntegrityError

#: panel numbers up to 64 bits (a 37-bit H10304 card, or a raw number a panel is configured for)
MAX_NUMBER = 2**64 - 1
SEALED_SIZE_MAX = 160


class PanelNumberError(IntegrityError):
    """A sealed panel number that does not open for this subject with this site's key."""


def _key(site_key: bytes) -> bytes:
    if len(site_key) != KEY_SIZE:
        raise ValueError("the site credential key must be 32 bytes")
    return hashlib.blake2b(b"", key=site_key, digest_size=32, person=b"gate-edge/panel").digest()


def _box(site_key: bytes) -> SecretBox:
    return SecretBox(_key(site_key))


def seal_panel_number(site_key: bytes, subject: str, number: int) -> bytes:
    """Deterministic: the nonce is a keyed hash of what is sealed, so re-issuing an unchanged roster
    gives the same bytes (devices see no change) and a nonce is only ever reused for the same message."""
    if isinstance(number, bool) or not 0 <= number <= MAX_NUMBER:
        raise ValueError(f"a panel number is 0..{MAX_NUMBER}")
    plain = cbor2.dumps([subject, number])
    nonce = hashlib.blake2b(
        plain, key=_key(site_key), digest_size=SecretBox.NONCE_SIZE, person=b"gate-edge/pnonce"
    ).digest()
    return bytes(_box(site_key).encrypt(plain, nonce))


def open_panel_number(site_key: bytes, subject: str, sealed: bytes) -> int:
    """The number, or ``PanelNumberError`` (wrong key, altered, or sealed for another subject)."""
    try:
        plain = _box(site_key).decrypt(sealed)
    except (CryptoError, ValueError):
        raise PanelNumberError("a panel number does not open with this site's credential key") from None
    try:
        value = strictcbor.loads(bytes(plain), strictcbor.HEADER)
    except strictcbor.CborProfileError:
        raise PanelNumberError("a sealed panel number is malformed") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] != subject
        or isinstance(value[1], bool)
        or not isinstance(value[1], int)
        or not 0 <= value[1] <= MAX_NUMBER
    ):
        raise PanelNumberError("a panel number was sealed for another subject")
    return value[1]
