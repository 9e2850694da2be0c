"""The pinned consent-authority keys on the device, and key rotation.

Each pinned key is a hex file ``trust/consent-authority-{kid}.pub`` (``StateDir.consent_authority_keys``).
Several may be pinned at once. Rotation is announced inside a signed list (see docs/consent.md):

1. the authority generates a successor key and issues a list, signed by a pinned key, whose
   ``keys.successors`` carries the successor's public key: applying it pins the successor;
2. once every device has taken that list, the authority signs with the successor and announces
   ``keys.retire`` with the old key id: applying it removes the old key file.

A list never retires the key that signed it nor leaves the device without a key; the ledger checks
both before it writes anything.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nacl.signing import VerifyKey

from edge.crypto.keys import key_id, load_verify_key
from edge.errors import StorageError
from edge.state import StateDir, fsync_dir

log = logging.getLogger(__name__)

PREFIX = "consent-authority-"
SUFFIX = ".pub"


def key_path(state: StateDir, kid: bytes) -> Path:
    return state.trust_dir / f"{PREFIX}{kid.hex()}{SUFFIX}"


def load_pinned(state: StateDir) -> dict[bytes, VerifyKey]:
    """Every pinned key by key id. A file whose content does not match its name is an error."""
    keys: dict[bytes, VerifyKey] = {}
    for path in state.consent_authority_keys():
        try:
            key = load_verify_key(path.read_text())
        except (ValueError, StorageError):
            raise StorageError(
                f"{path} is not a hex Ed25519 public key", hint="re-pin the authority key with `edge-provision trust`"
            ) from None
        kid = key_id(key)
        if path.name != f"{PREFIX}{kid.hex()}{SUFFIX}":
            raise StorageError(
                f"{path} holds a key whose id is {kid.hex()}, not the one in its name",
                hint="re-pin the authority key with `edge-provision trust`",
            )
        keys[kid] = key
    return keys


def pin(state: StateDir, public: VerifyKey | bytes) -> bytes:
    """Pin ``public`` (idempotent); returns its key id. Written atomically, directory fsynced."""
    raw = bytes(public)
    kid = key_id(raw)
    path = key_path(state, kid)
    state.trust_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        return kid
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(raw.hex() + "\n")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_dir(state.trust_dir)
    log.info("pinned consent authority key %s", kid.hex())
    return kid


def retire(state: StateDir, kid: bytes) -> None:
    path = key_path(state, kid)
    if path.exists():
        path.unlink()
        fsync_dir(state.trust_dir)
        log.info("retired consent authority key %s", kid.hex())


def install_credential_key(state: StateDir, key: bytes) -> Path:
    """Install the site's credential key (``trust/consent-credential.key``, 0600) on this device."""
    from edge.credentials.hashing import KEY_FILE_NAME, KEY_SIZE
    from edge.crypto.keys import write_secret

    if len(key) != KEY_SIZE:
        raise StorageError(f"the site credential key must be {KEY_SIZE} bytes, found {len(key)}")
    path = state.trust_dir / KEY_FILE_NAME
    write_secret(path, key, overwrite=True)
    return path
