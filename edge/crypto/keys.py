"""Ed25519 identities and key ids, X25519 template-sync keys, and the 0600 key files that hold them.

A gate has two key pairs: its Ed25519 identity (signs events, receipts and template parcels; its
public key names the device) and an X25519 key that template parcels from the site's other gates
are sealed to (``edge.sync.parcel``). Keeping them apart means a compromise of one use does not
hand over the other, and either can be rotated alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from edge.errors import StorageError
from edge.state import atomic_write


def key_id(public: VerifyKey | bytes) -> bytes:
    """An 8-byte key id: the start of SHA-256 over the raw public key."""
    raw = bytes(public)
    return hashlib.sha256(raw).digest()[:8]


def device_id(public: VerifyKey | bytes) -> str:
    """The device id derived from its public key (so it cannot be chosen or collide by mistake)."""
    return "gw-" + hashlib.sha256(bytes(public)).hexdigest()[:16]


def fingerprint_text(public: VerifyKey | bytes) -> str:
    """A fingerprint an installer compares by eye: SHA-256, grouped."""
    digest = hashlib.sha256(bytes(public)).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def write_secret(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to a new 0600 file atomically (temp file, fsync, rename, fsync directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise StorageError(f"{path} already exists", hint="pass --force to replace it")
    atomic_write(path, data, 0o600)


def read_secret(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise StorageError(f"{path} is missing", hint="run `edge-provision init` first") from None
    if mode & 0o077:
        raise StorageError(f"{path} is readable by others (mode {mode:o})", hint=f"chmod 600 {path}")
    return path.read_bytes()


def generate_signing_key(path: Path, *, overwrite: bool = False) -> SigningKey:
    key = SigningKey.generate()
    write_secret(path, bytes(key), overwrite=overwrite)
    return key


def load_signing_key(path: Path) -> SigningKey:
    raw = read_secret(path)
    if len(raw) != 32:
        raise StorageError(f"{path} is not an Ed25519 private key (expected 32 bytes, found {len(raw)})")
    return SigningKey(raw)


def load_verify_key(text_or_bytes: str | bytes) -> VerifyKey:
    """A public key from 32 raw bytes or 64 hex characters."""
    raw = bytes.fromhex(text_or_bytes.strip()) if isinstance(text_or_bytes, str) else text_or_bytes
    if len(raw) != 32:
        raise StorageError(f"not an Ed25519 public key (expected 32 bytes, found {len(raw)})")
    return VerifyKey(raw)


def generate_box_key(path: Path, *, overwrite: bool = False) -> PrivateKey:
    """A new X25519 key for sealed template parcels, in a 0600 file."""
    key = PrivateKey.generate()
    write_secret(path, bytes(key), overwrite=overwrite)
    return key


def load_box_key(path: Path) -> PrivateKey:
    raw = read_secret(path)
    if len(raw) != 32:
        raise StorageError(f"{path} is not an X25519 private key (expected 32 bytes, found {len(raw)})")
    return PrivateKey(raw)


def load_box_public(text_or_bytes: str | bytes) -> PublicKey:
    """An X25519 public key from 32 raw bytes or 64 hex characters."""
    try:
        raw = bytes.fromhex(text_or_bytes.strip()) if isinstance(text_or_bytes, str) else bytes(text_or_bytes)
    except ValueError:
        raise StorageError("an X25519 public key must be 64 hex characters") from None
    if len(raw) != 32:
        raise StorageError(f"not an X25519 public key (expected 32 bytes, found {len(raw)})")
    return PublicKey(raw)
