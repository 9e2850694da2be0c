"""A tamper-evident audit log: SQLite records in a SHA-256 hash chain whose head the device key signs.

Each record is ``(seq, at, kind, details)``; its hash is ``SHA-256(previous hash || CBOR([seq, at,
kind, details]))`` starting from a genesis value bound to the device key id. After every append the
head (last seq and hash) is signed as a COSE_Sign1 by the device key and stored in the same
transaction. Altering, dropping, reordering or appending records without the device key breaks
either the chain or the head signature; ``verify_export`` finds which.

Details hold subject ids, counts, reasons and versions, never biometric data: ``append`` refuses
byte strings, long text and keys that name biometric material.

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

from edge.crypto.cose import CoseError, sign1, verify1
from edge.crypto.keys import key_id
from edge.errors import IntegrityError, StorageError

log = logging.getLogger(__name__)

EXPORT_FORMAT = "gate-edge-audit/1"
HEAD_AAD = b"gate-edge/audit-head"
MAX_TEXT = 256
FORBIDDEN_KEY_PARTS = (
    "embedding",
    "image",
    "minutiae",
    "pixels",
    "template_data",
    "template_bytes",
    "biometric_data",
    "feature",
)
MAX_NUMBERS = 64  # a longer list of numbers looks like an embedding

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


def genesis(kid: bytes) -> bytes:
    return hashlib.sha256(b"gate-edge audit v1\x00" + kid).digest()


def record_hash(prev: bytes, seq: int, at: float, kind: str, details_cbor: bytes) -> bytes:
    body = bytes(cbor2.dumps([seq, at, kind, cbor2.CBORTag(24, details_cbor)], canonical=True))
    return hashlib.sha256(prev + body).digest()


def _check_details(value: object, path: str = "details") -> None:
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"audit {path} is longer than {MAX_TEXT} characters")
        return
    if isinstance(value, list | tuple):
        numbers = sum(1 for item in value if isinstance(item, int | float) and not isinstance(item, bool))
        if numbers > MAX_NUMBERS:
            raise ValueError(f"audit {path} is a list of {numbers} numbers; audit records never hold vectors")
        for i, item in enumerate(value):
            _check_details(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"audit {path} has a non-text key")
            lowered = key.lower()
            if any(part in lowered for part in FORBIDDEN_KEY_PARTS):
                raise ValueError(f"audit {path}.{key} names biometric material; audit records never hold it")
            _check_details(item, f"{path}.{key}")
        return
    raise ValueError(f"audit {path} has a value of type {type(value).__name__}; only text, numbers and maps")


def _encode_details(details: Mapping[str, object]) -> bytes:
    _check_details(details)
    return bytes(cbor2.dumps(dict(details), canonical=True))


def _sign_head(key: SigningKey, kid: bytes, seq: int, digest: bytes) -> bytes:
    payload = bytes(cbor2.dumps({"seq": seq, "hash": digest}, canonical=True))
    return sign1(key, kid, payload, HEAD_AAD, content_type="application/cbor")


def _verify_head(signed: bytes, public: VerifyKey) -> tuple[int, bytes]:
    kid = key_id(public)
    try:
        payload = verify1(signed, {kid: public}, HEAD_AAD).payload
        head = cbor2.loads(payload)
    except CoseError as exc:
        raise AuditVerifyError(f"head signature: {exc.reason}") from None
    except Exception:
        raise AuditVerifyError("head payload is not CBOR") from None
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), bytes):
        raise AuditVerifyError("head payload is malformed")
    return int(head["seq"]), bytes(head["hash"])


class AuditLog:
    """The device's audit log. Thread-safe; every append is one durable SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection, key: SigningKey, path: Path) -> None:
        self._conn = conn
        self._key = key
        self._kid = key_id(key.verify_key)
        self._lock = threading.Lock()
        self.path = path
        row = conn.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
        if row is None:
            self._seq, self._hash = 0, genesis(self._kid)
        else:
            self._seq, self._hash = int(row[0]), bytes(row[1])
        last = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if (last is None and self._seq != 0) or (
            last is not None and (last[0], bytes(last[1])) != (self._seq, self._hash)
        ):
            raise StorageError(
                f"{path}: the audit head does not match the last record",
                hint="export the log with `edge` tools and have it checked with `edge-site audit verify`",
            )

    @classmethod
    def open(cls, path: Path, signing_key: SigningKey, *, synchronous: str = "FULL") -> AuditLog:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open the audit log ({exc})") from None
        return cls(conn, signing_key, path)

    @property
    def kid(self) -> bytes:
        return self._kid

    @property
    def head_seq(self) -> int:
        return self._seq

    def append(self, kind: str, details: Mapping[str, object], *, at: float | None = None) -> int:
        """Append one record; returns its sequence number. Refuses biometric-looking details."""
        if not kind or len(kind) > 64:
            raise ValueError("audit kind must be 1-64 characters")
        encoded = _encode_details(details)
        when = float(time.time() if at is None else at)
        with self._lock:
            seq = self._seq + 1
            digest = record_hash(self._hash, seq, when, kind, encoded)
            signed = _sign_head(self._key, self._kid, seq, digest)
            try:
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
                raise StorageError(f"{self.path}: cannot append to the audit log ({exc})") from None
            self._seq, self._hash = seq, digest
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


def _verify_records(records: list[Any], signed_head: bytes, public: VerifyKey) -> AuditReport:
    kid = key_id(public)
    prev = genesis(kid)
    kinds: Counter[str] = Counter()
    for index, record in enumerate(records, start=1):
        if not isinstance(record, list) or len(record) != 5:
            raise AuditVerifyError("record is not a five-element array", index)
        seq, at, kind, details, digest = record
        if seq != index:
            raise AuditVerifyError(f"sequence number {seq!r} where {index} was expected", index)
        if not isinstance(at, float | int) or not isinstance(kind, str) or not isinstance(details, dict):
            raise AuditVerifyError("record fields have the wrong types", index)
        try:
            encoded = _encode_details(details)
        except ValueError:
            raise AuditVerifyError("record details are not valid audit details", index) from None
        expected = record_hash(prev, seq, float(at), kind, encoded)
        if digest != expected:
            raise AuditVerifyError("hash chain broken (record altered, inserted or removed)", index)
        kinds[kind] += 1
        prev = expected
    head_seq, head_hash = _verify_head(signed_head, public)
    if head_seq != len(records) or head_hash != prev:
        raise AuditVerifyError(
            f"signed head covers {head_seq} records but the log has {len(records)} (records dropped or added)"
        )
    first = float(records[0][1]) if records else None
    last = float(records[-1][1]) if records else None
    return AuditReport(len(records), head_seq, dict(kinds), first, last)


def read_export(path: Path) -> tuple[bytes, list[Any], bytes]:
    """The device kid, records and signed head of an export file (structure only, not verified)."""
    try:
        doc = cbor2.loads(path.read_bytes())
    except FileNotFoundError:
        raise AuditVerifyError(f"{path} does not exist") from None
    except Exception:
        raise AuditVerifyError("export is not CBOR") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise AuditVerifyError(f"export is not a {EXPORT_FORMAT} file")
    kid, records, head = doc.get("device_kid"), doc.get("records"), doc.get("head")
    if not isinstance(kid, bytes) or not isinstance(records, list) or not isinstance(head, bytes):
        raise AuditVerifyError("export lacks device_kid, records or head")
    return kid, records, head


def verify_export(path: Path, public_key: VerifyKey) -> AuditReport:
    """Verify an exported log against the device's public key; raises ``AuditVerifyError``."""
    kid, records, head = read_export(path)
    if kid != key_id(public_key):
        raise AuditVerifyError(f"export is from device key {kid.hex()}, not {key_id(public_key).hex()}")
    return _verify_records(records, head, public_key)
