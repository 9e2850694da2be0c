"""The Secure Channel base key (SCBK): 16 bytes shared by this reader and the panel.

It lives in the state directory (``StateDir.osdp_scbk``, 0600, shredded by factory-reset like the
other ``.key`` files) and is never logged, printed by the agent or put in an error message. An
installer compares keys by ``key_id``: a short digest that says whether two copies are the same
without revealing either. ``edge-provision osdp-key`` installs it: from the panel's configuration
(``--hex-stdin``), newly made (``--generate``, shown once to type into the panel), or received from
the panel itself in install mode (the panel sends its KEYSET over a session keyed with the
standard's default key SCBK-D).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from edge.crypto.keys import read_secret, write_secret
from edge.errors import EdgeError, StorageError

SCBK_LEN = 16


class ScbkFormatError(EdgeError, ValueError):
    """Text that is not a 16-byte key in hex. The message never repeats the text."""


def generate() -> bytes:
    return secrets.token_bytes(SCBK_LEN)


def parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "").replace("-", "")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise ScbkFormatError(f"an SCBK is {2 * SCBK_LEN} hex digits; the text given is not hex") from None
    if len(key) != SCBK_LEN:
        raise ScbkFormatError(f"an SCBK is {2 * SCBK_LEN} hex digits; the text given has {len(cleaned)}")
    return key


def key_id(key: bytes) -> str:
    """8 hex digits that tell two copies of a key apart without revealing it."""
    return hashlib.sha256(b"gate-edge osdp scbk\x00" + key).hexdigest()[:8]


def read(path: Path) -> bytes:
    try:
        key = read_secret(path)
    except StorageError as exc:
        if not path.exists():
            raise StorageError(
                f"no OSDP Secure Channel key at {path}",
                hint="install the panel's key: edge-provision osdp-key --hex-stdin (or --install-mode)",
            ) from None
        raise exc from None
    if len(key) != SCBK_LEN:
        raise StorageError(
            f"{path} is not an OSDP Secure Channel key ({len(key)} bytes, expected {SCBK_LEN})",
            hint="install it again: edge-provision osdp-key --force ...",
        )
    return key


def write(path: Path, key: bytes, *, overwrite: bool = False) -> None:
    if len(key) != SCBK_LEN:
        raise ScbkFormatError(f"an SCBK is {SCBK_LEN} bytes")
    write_secret(path, key, overwrite=overwrite)
