"""The layout of the agent's state directory: one place that names every file the agent keeps.

Secrets are 0600 files; the directory itself is 0700. Stores are SQLite databases owned by the
subsystem that writes them. Nothing here holds raw biometrics in plaintext.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.errors import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateDir:
    root: Path

    # secrets (0600)
    @property
    def identity_key(self) -> Path:
        """The device's Ed25519 private key (signs every event)."""
        return self.root / "identity.key"

    @property
    def sync_key(self) -> Path:
        """The gate's X25519 key: template parcels from the site's other gates are sealed to it."""
        return self.root / "sync.key"

    @property
    def gallery_key(self) -> Path:
        """The gallery's secret: encryption key and template-protection seed."""
        return self.root / "gallery.key"

    @property
    def osdp_scbk(self) -> Path:
        """The OSDP Secure Channel base key shared with the site's panel ([door] mode = "osdp")."""
        return self.root / "osdp-scbk.key"

    # trust anchors
    @property
    def trust_dir(self) -> Path:
        return self.root / "trust"

    @property
    def broker_ca(self) -> Path:
        return self.trust_dir / "broker-ca.pem"

    def consent_authority_keys(self) -> list[Path]:
        """Pinned consent-authority public keys, one hex file per key id (rotation keeps several)."""
        return sorted(self.trust_dir.glob("consent-authority-*.pub"))

    # stores
    @property
    def gallery_db(self) -> Path:
        return self.root / "gallery.sqlite3"

    @property
    def consent_db(self) -> Path:
        return self.root / "consent.sqlite3"

    @property
    def audit_db(self) -> Path:
        return self.root / "audit.sqlite3"

    @property
    def outbox_db(self) -> Path:
        """Signed events waiting for PUBACK, and the persisted event sequence number."""
        return self.root / "outbox.sqlite3"

    @property
    def passback_db(self) -> Path:
        """Anti-passback presence: who is inside which area (subject pseudonyms, never biometrics)."""
        return self.root / "passback.sqlite3"

    @property
    def duress_slots(self) -> Path:
        """Sensor slots enrolled as duress fingers (slot numbers only)."""
        return self.root / "duress.json"

    @property
    def sensor_erase_queue(self) -> Path:
        """Fingerprint sensor slots waiting to be erased (slot, subject, reason; never templates)."""
        return self.root / "sensor-erase.json"

    @property
    def pending_deletions(self) -> Path:
        """Deletions begun and not yet receipted (subject, reason, counts; never templates)."""
        return self.root / "deletions.json"

    @property
    def start_attempts(self) -> Path:
        """The last failed start-ups (``edge.ops.safemode``): what failed, how often, safe mode."""
        return self.root / "start-attempts.json"

    @property
    def settings(self) -> Path:
        """What provisioning chose: profile, broker, site (TOML, secrets redacted elsewhere)."""
        return self.root / "edge.toml"

    def ensure(self) -> None:
        """Create the directory 0700, or check an existing one is not open to others."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.trust_dir.mkdir(mode=0o700, exist_ok=True)
        for path in (self.root, self.trust_dir):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise StorageError(f"{path} is open to other users (mode {mode:o})", hint=f"chmod 700 {path}")
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable by this user")


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` at ``mode`` so a power cut leaves the old or the new file whole.

    Temp file beside it (created at ``mode``, never wider), fsync, rename, fsync of the directory.
    """
    from edge.state_faults import check_file_write

    check_file_write(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in directory ``path`` durable (a power cut after it keeps it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(path: Path, schema: str, what: str, *, memory_fallback: bool = True) -> sqlite3.Connection:
    """A small store's SQLite database: WAL, ``synchronous=FULL`` (a commit survives a power cut),
    usable from several threads (the caller serialises with its own lock), ``schema`` applied.

    A file that cannot be opened (a read-only state directory, a damaged file) is a
    ``StorageError`` naming ``what`` and the file, unless ``memory_fallback``: then the store runs
    in memory (it forgets at exit; logged, and reported to ``edge.state_health`` so the one
    storage alarm covers it) and a damaged file is left where it is for the installer."""
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        from edge.state_faults import classify
        from edge.state_health import HEALTH

        if not memory_fallback:
            raise StorageError(f"cannot open the {what} {path}: {exc}", hint="check the state directory") from None
        cause = classify(exc) or "io"
        log.error("cannot open the %s %s (%s): it runs in memory until the agent restarts", what, path.name, exc)
        HEALTH.failed(path.name.split(".")[0], "io" if cause == "damaged" else cause)
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(schema)
    return db
