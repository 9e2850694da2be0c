"""A tamper-evident audit log: SQLite records in a SHA-256 hash chain whose head the device key signs.

Each record is ``(seq, at, kind, details)``; its hash is ``SHA-256(previous hash || CBOR([seq, at,
kind, details]))`` starting from a genesis value bound to the device key id. After every append the
head (last seq and hash) is signed as a COSE_Sign1 by the device key and stored in the same
transaction. Altering, dropping, reordering or appending records without the device key breaks
either the chain or the head signature; ``verify_export`` finds which.

Details hold subject ids, counts, reasons and versions, never biometric data: ``append`` accepts
only the record kinds, keys and value types of the allow-list in ``edge.audit.kinds`` (listed in
docs/privacy.md) and refuses everything else with ``AuditRefused``.

A new device identity (``edge-provision init --force``) starts a new chain: the old log is
archived as an export file (with its signed head, verifiable with the old public key) and the new
log's first record, ``audit_chain_started``, names the old key id, head and archive, so
``edge-site audit verify NEW --previous ARCHIVE`` checks the hand-over.

An export is one CBOR map (``format``, ``device_kid``, ``records``, ``head``), checked offline by
``edge-site audit verify FILE`` with the device's public key.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from nacl.signing import SigningKey, VerifyKey

from edge.audit import kinds
from edge.audit.kinds import AuditRefused
from edge.crypto import strictcbor
from edge.crypto.cose import CoseError, peek_kid, sign1, verify1
from edge.crypto.keys import key_id
from edge.errors import IntegrityError, StorageError, StorageUnavailable, StoreDamaged
from edge.state import atomic_write
from edge.state_faults import check_write, storage_error
from edge.state_health import HEALTH, StorageHealth

__all__ = ["AuditLog", "AuditRefused", "AuditReport", "AuditVerifyError", "Handover", "verify_export"]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "gate-edge-audit/1"
HEAD_AAD = b"gate-edge/audit-head"
CHAIN_START = "audit_chain_started"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    details BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    signed BLOB NOT NULL
);
"""


class AuditVerifyError(IntegrityError):
    """An audit log (or its export) fails verification; ``seq`` is the first bad record, if any."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        self.reason = reason
        self.seq = seq
        where = f" at record {seq}" if seq is not None else ""
        super().__init__(f"audit log rejected{where}: {reason}")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: float
    kind: str
    details: dict[str, Any]
    hash: bytes


@dataclass(frozen=True)
class AuditReport:
    records: int
    head_seq: int
    kinds: dict[str, int]
    first_at: float | None
    last_at: float | None
    #: Records whose details are outside today's allow-list (written by an older version).
    nonconforming: int = 0
    #: The details of record 1 when it is an ``audit_chain_started`` hand-over from another key.
    chain_start: dict[str, Any] | None = None
    #: The signed head's hash (what a successor chain names as ``previous_head_hash``).
    head_hash: bytes = b""


@dataclass(frozen=True)
class Handover:
    """What a new chain records about the log it replaced (``audit_chain_started``)."""

    previous_kid: bytes
    previous_head_seq: int
    previous_head_hash: bytes
    archive: Path

    def details(self) -> dict[str, object]:
        return {
            "reason": "reprovisioned",
            "previous_kid": self.previous_kid.hex(),
            "previous_head_seq": self.previous_head_seq,
            "previous_head_hash": self.previous_head_hash.hex(),
            "archive": self.archive.name,
        }


def genesis(kid: bytes) -> bytes:
    return hashlib.sha256(b"gate-edge audit v1\x00" + kid).digest()


def record_hash(prev: bytes, seq: int, at: float, kind: str, details_cbor: bytes) -> bytes:
    body = bytes(cbor2.dumps([seq, at, kind, cbor2.CBORTag(24, details_cbor)], canonical=True))
    return hashlib.sha256(prev + body).digest()


def _encode_details(kind: str, details: Mapping[str, object]) -> bytes:
    """The canonical CBOR of ``details`` once the allow-list accepts them (``AuditRefused`` if not)."""
    kinds.check(kind, details)
    return bytes(cbor2.dumps(dict(details), canonical=True))


def _encode_stored(details: object) -> bytes:
    """Re-encode details read back from an export (already strict CBOR) to recompute the chain."""
    try:
        return bytes(cbor2.dumps(details, canonical=True))
    except Exception as exc:
        raise ValueError(exc.__class__.__name__) from None


def _sign_head(key: SigningKey, kid: bytes, seq: int, digest: bytes) -> bytes:
    payload = bytes(cbor2.dumps({"seq": seq, "hash": digest}, canonical=True))
    return sign1(key, kid, payload, HEAD_AAD, content_type="application/cbor")


def _verify_head(signed: bytes, public: VerifyKey) -> tuple[int, bytes]:
    kid = key_id(public)
    try:
        payload = verify1(signed, {kid: public}, HEAD_AAD).payload
        head = strictcbor.loads(payload, strictcbor.HEADER)
    except CoseError as exc:
        raise AuditVerifyError(f"head signature: {exc.reason}") from None
    except strictcbor.CborProfileError:
        raise AuditVerifyError("head payload is not strict CBOR") from None
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), bytes):
        raise AuditVerifyError("head payload is malformed")
    return int(head["seq"]), bytes(head["hash"])


class AuditLog:
    """The device's audit log. Thread-safe; every append is one durable SQLite transaction."""

    def __init__(
        self, conn: sqlite3.Connection, key: SigningKey, path: Path, *, health: StorageHealth | None = None
    ) -> None:
        self._conn = conn
        self._key = key
        self._kid = key_id(key.verify_key)
        self._lock = threading.Lock()
        self.path = path
        self.health = health if health is not None else HEALTH
        try:
            row = conn.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
            last = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _read_error(path, exc) from None
        if row is None:
            self._seq, self._hash = 0, genesis(self._kid)
        else:
            self._seq, self._hash = int(row[0]), bytes(row[1])
        if (last is None and self._seq != 0) or (
            last is not None and (last[0], bytes(last[1])) != (self._seq, self._hash)
        ):
            raise StorageError(
                f"{path}: the audit head does not match the last record",
                hint="export the log with `edge` tools and have it checked with `edge-site audit verify`",
            )

    @classmethod
    def open(
        cls,
        path: Path,
        signing_key: SigningKey,
        *,
        synchronous: str = "FULL",
        health: StorageHealth | None = None,
    ) -> AuditLog:
        """Open the log; ``StoreDamaged`` when the file cannot be read, ``StorageError`` otherwise."""
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open the audit log ({exc})") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise _read_error(path, exc) from None
        return cls(conn, signing_key, path, health=health)

    @classmethod
    def open_or_replace(cls, path: Path, signing_key: SigningKey, *, health: StorageHealth | None = None) -> AuditLog:
        """Open the log; a damaged file is set aside, what is still readable of it archived as an
        export (records and the signed head, as ``edge-provision init --force`` archives a log),
        and a new chain started whose first record, ``audit_chain_started`` (reason ``damaged``),
        names the archive and the old head where it could be read. The records are never lost:
        the damaged file is kept and the archive verifies with ``edge-site audit verify``."""
        from dataclasses import replace

        from edge.state_recovery import set_aside, write_note

        try:
            return cls.open(path, signing_key, health=health)
        except StoreDamaged as exc:
            info = set_aside(path, "audit", exc.detail)
        aside = path.with_name(info.aside)
        details: dict[str, object] = {"reason": "damaged", "archive": info.aside}
        salvaged = 0
        records, head = _salvage(aside)
        if records:
            salvaged = len(records)
            details["salvaged"] = salvaged
        if head is not None and records:
            archive = aside.with_name(info.aside + ".cbor")
            doc = {
                "format": EXPORT_FORMAT,
                "device_kid": key_id(signing_key.verify_key),
                "records": records,
                "head": head[2],
            }
            try:
                atomic_write(archive, bytes(cbor2.dumps(doc, canonical=True)), 0o600)
                details.update(
                    archive=archive.name,
                    previous_kid=key_id(signing_key.verify_key).hex(),
                    previous_head_seq=int(head[0]),
                    previous_head_hash=bytes(head[1]).hex(),
                )
            except OSError as error:
                log.error("could not write the audit archive (%s)", error.strerror)
        fresh = cls.open(path, signing_key, health=health)
        fresh.append(CHAIN_START, details)
        write_note(path.parent, replace(info, salvaged=salvaged))
        log.error("a new audit chain was started; %d records of the damaged log were archived", salvaged)
        return fresh

    @property
    def kid(self) -> bytes:
        return self._kid

    @property
    def head_seq(self) -> int:
        return self._seq

    def append(self, kind: str, details: Mapping[str, object], *, at: float | None = None) -> int:
        """Append one record; returns its sequence number. ``AuditRefused`` unless the allow-list accepts it."""
        encoded = _encode_details(kind, details)
        when = float(time.time() if at is None else at)
        with self._lock:
            seq = self._seq + 1
            digest = record_hash(self._hash, seq, when, kind, encoded)
            signed = _sign_head(self._key, self._kid, seq, digest)
            try:
                check_write(self.path)
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    "INSERT INTO records (seq, at, kind, details, hash) VALUES (?, ?, ?, ?, ?)",
                    (seq, when, kind, encoded, digest),
                )
                self._conn.execute(
                    "INSERT INTO head (id, seq, hash, signed) VALUES (1, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, signed = excluded.signed",
                    (seq, digest, signed),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                error = storage_error(self.path, "audit log", exc)
                if isinstance(error, StorageUnavailable):
                    self.health.failed("audit", error.cause)
                raise error from None
            self._seq, self._hash = seq, digest
        self.health.succeeded("audit")
        log.debug("audit record %s (%s)", seq, kind)
        return seq

    def records(self, since: int = 0) -> list[AuditRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, at, kind, details, hash FROM records WHERE seq > ? ORDER BY seq", (since,)
            ).fetchall()
        return [AuditRecord(int(s), float(a), str(k), cbor2.loads(d), bytes(h)) for s, a, k, d, h in rows]

    def export(self, path: Path) -> int:
        """Write the whole log and its signed head to ``path``; returns the number of records."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, at, kind, details, hash FROM records ORDER BY seq").fetchall()
            head = self._conn.execute("SELECT signed FROM head WHERE id = 1").fetchone()
            signed = bytes(head[0]) if head else _sign_head(self._key, self._kid, 0, genesis(self._kid))
        doc = {
            "format": EXPORT_FORMAT,
            "device_kid": self._kid,
            "records": [[int(s), float(a), str(k), cbor2.loads(d), bytes(h)] for s, a, k, d, h in rows],
            "head": signed,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(cbor2.dumps(doc, canonical=True))
        tmp.replace(path)
        return len(rows)

    def verify(self) -> AuditReport:
        """Check this device's own log (chain and signed head) in place."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, at, kind, details, hash FROM records ORDER BY seq").fetchall()
            head = self._conn.execute("SELECT signed FROM head WHERE id = 1").fetchone()
        records = [[int(s), float(a), str(k), cbor2.loads(d), bytes(h)] for s, a, k, d, h in rows]
        signed = bytes(head[0]) if head else _sign_head(self._key, self._kid, 0, genesis(self._kid))
        return _verify_records(records, signed, self._key.verify_key)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _read_error(path: Path, exc: sqlite3.Error) -> StorageError:
    error = storage_error(path, "audit log", exc)
    if isinstance(error, StoreDamaged):
        return error
    return StorageError(f"{path}: cannot open the audit log ({exc})", hint=error.hint)


def _salvage(path: Path) -> tuple[list[list[Any]], tuple[int, bytes, bytes] | None]:
    """The records (up to the first unreadable page) and the signed head still readable in a damaged
    log. The head is returned only when it covers exactly the records read (a whole chain)."""
    records: list[list[Any]] = []
    head: tuple[int, bytes, bytes] | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return records, None
    try:
        try:
            cur = conn.execute("SELECT seq, at, kind, details, hash FROM records ORDER BY seq")
            while (row := cur.fetchone()) is not None:
                s, a, k, d, h = row
                records.append([int(s), float(a), str(k), cbor2.loads(d), bytes(h)])
        except (sqlite3.Error, ValueError, TypeError, cbor2.CBORDecodeError):
            pass
        try:
            found = conn.execute("SELECT seq, hash, signed FROM head WHERE id = 1").fetchone()
            if found is not None:
                head = (int(found[0]), bytes(found[1]), bytes(found[2]))
        except (sqlite3.Error, ValueError, TypeError):
            head = None
    finally:
        conn.close()
    if head is not None and (not records or records[-1][0] != head[0] or len(records) != head[0]):
        head = None  # records are missing: the archive would not verify against this head
    return records, head


def _verify_records(records: list[Any], signed_head: bytes, public: VerifyKey) -> AuditReport:
    kid = key_id(public)
    prev = genesis(kid)
    kinds_seen: Counter[str] = Counter()
    nonconforming = 0
    chain_start: dict[str, Any] | None = None
    for index, record in enumerate(records, start=1):
        if not isinstance(record, list) or len(record) != 5:
            raise AuditVerifyError("record is not a five-element array", index)
        seq, at, kind, details, digest = record
        if seq != index or isinstance(seq, bool):
            raise AuditVerifyError(f"sequence number where {index} was expected is wrong", index)
        if (
            isinstance(at, bool)
            or not isinstance(at, float | int)
            or not isinstance(kind, str)
            or not isinstance(details, dict)
            or not isinstance(digest, bytes)
        ):
            raise AuditVerifyError("record fields have the wrong types", index)
        try:
            encoded = _encode_stored(details)
            expected = record_hash(prev, seq, float(at), kind, encoded)
        except (ValueError, OverflowError):
            raise AuditVerifyError("record details cannot be re-encoded", index) from None
        if digest != expected:
            raise AuditVerifyError("hash chain broken (record altered, inserted or removed)", index)
        try:
            kinds.check(kind, details)
        except kinds.AuditRefused:
            nonconforming += 1
        if kind == CHAIN_START:
            if index != 1:
                raise AuditVerifyError("a chain hand-over record that is not the first record", index)
            chain_start = dict(details)
        kinds_seen[kind if len(kind) <= 64 else kind[:64]] += 1
        prev = expected
    head_seq, head_hash = _verify_head(signed_head, public)
    if head_seq != len(records) or head_hash != prev:
        raise AuditVerifyError(
            f"signed head covers {head_seq} records but the log has {len(records)} (records dropped or added)"
        )
    first = float(records[0][1]) if records else None
    last = float(records[-1][1]) if records else None
    return AuditReport(len(records), head_seq, dict(kinds_seen), first, last, nonconforming, chain_start, head_hash)


def parse_export(data: bytes) -> tuple[bytes, list[Any], bytes]:
    """The device kid, records and signed head of export bytes (structure only, not verified)."""
    try:
        doc = strictcbor.loads(data, strictcbor.AUDIT_EXPORT)
    except strictcbor.CborProfileError as exc:
        raise AuditVerifyError(f"export is not strict CBOR ({exc.reason})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise AuditVerifyError(f"export is not a {EXPORT_FORMAT} file")
    kid, records, head = doc.get("device_kid"), doc.get("records"), doc.get("head")
    if not isinstance(kid, bytes) or not isinstance(records, list) or not isinstance(head, bytes):
        raise AuditVerifyError("export lacks device_kid, records or head")
    return kid, records, head


def read_export(path: Path) -> tuple[bytes, list[Any], bytes]:
    """The device kid, records and signed head of an export file (structure only, not verified)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditVerifyError(f"{path} does not exist") from None
    except OSError as exc:
        raise AuditVerifyError(f"{path} cannot be read ({exc.__class__.__name__})") from None
    return parse_export(data)


def verify_export_bytes(data: bytes, public_key: VerifyKey) -> AuditReport:
    """Verify export bytes against the device's public key; raises ``AuditVerifyError`` only."""
    kid, records, head = parse_export(data)
    if kid != key_id(public_key):
        raise AuditVerifyError(f"export is from device key {kid.hex()[:16]}, not {key_id(public_key).hex()}")
    return _verify_records(records, head, public_key)


def verify_export(path: Path, public_key: VerifyKey) -> AuditReport:
    """Verify an exported log against the device's public key; raises ``AuditVerifyError``."""
    kid, records, head = read_export(path)
    if kid != key_id(public_key):
        raise AuditVerifyError(f"export is from device key {kid.hex()[:16]}, not {key_id(public_key).hex()}")
    return _verify_records(records, head, public_key)


def verify_handover(current: AuditReport, previous: AuditReport, previous_key: VerifyKey) -> None:
    """Check that ``current`` (a verified log) starts by naming ``previous`` (its verified archive)."""
    start = current.chain_start
    if start is None:
        raise AuditVerifyError("the log does not start with an audit_chain_started record", 1)
    if start.get("previous_kid") != key_id(previous_key).hex():
        raise AuditVerifyError("the hand-over names another previous device key", 1)
    if (
        start.get("previous_head_seq") != previous.head_seq
        or start.get("previous_head_hash") != previous.head_hash.hex()
    ):
        raise AuditVerifyError(
            "the hand-over names another head than the archive's (archive altered or not this one)", 1
        )


def archive_for_new_identity(path: Path, archive_dir: Path) -> Handover | None:
    """Move the log at ``path`` aside before a new device identity starts a new chain.

    The old log is written to ``archive_dir`` as an export file (records and the head the old key
    signed; no key is needed to write it), then the database is removed. Returns what the new
    chain's first record names, or None when there was no log or it held no record.
    """
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT seq, at, kind, details, hash FROM records ORDER BY seq").fetchall()
            head = conn.execute("SELECT seq, hash, signed FROM head WHERE id = 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot read the old audit log to archive it ({exc})") from None
    handover: Handover | None = None
    if head is not None:
        signed = bytes(head[2])
        try:
            kid = peek_kid(signed)
        except CoseError:
            raise StorageError(f"{path}: the old audit head is unreadable; archive the file by hand") from None
        archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        archive = archive_dir / f"audit-{kid.hex()}-{int(head[0])}.cbor"
        doc = {
            "format": EXPORT_FORMAT,
            "device_kid": kid,
            "records": [[int(s), float(a), str(k), cbor2.loads(d), bytes(h)] for s, a, k, d, h in rows],
            "head": signed,
        }
        atomic_write(archive, bytes(cbor2.dumps(doc, canonical=True)), 0o600)
        handover = Handover(kid, int(head[0]), bytes(head[1]), archive)
        log.info("archived the audit log of key %s (%s records) to %s", kid.hex(), len(rows), archive)
    for extra in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        extra.unlink(missing_ok=True)
    return handover
