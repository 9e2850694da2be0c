"""The gallery's file: SQLite rows of sealed boxes, and nothing that needs the key.

``gallery.sqlite3`` (WAL, ``synchronous=FULL``, ``secure_delete``, incremental auto-vacuum) holds
one *record* row per (subject, modality), one row per face template, the ``meta`` row (schema,
dimension, key check) and the ``quarantine``: rows that failed authentication when they were read,
moved aside whole (still sealed) for forensics and never used again. Rows are found by the opaque
keyed tag of a subject id; this module only moves bytes (``edge.gallery.sealed`` opens them).

Every change is one ``BEGIN IMMEDIATE`` transaction (``transaction``). A failure to open or read
the file is a ``StoreDamaged`` naming the file and the fix; a failure to write is a
``StorageError`` (the caller decides whether to degrade).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edge.errors import StorageError, StorageUnavailable, StoreDamaged
from edge.state_faults import check_write, storage_error
from edge.state_health import HEALTH

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
WHAT = "gallery"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    tag BLOB NOT NULL, modality TEXT NOT NULL, box BLOB NOT NULL, PRIMARY KEY (tag, modality)
);
CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY, tag BLOB NOT NULL, box BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS templates_tag ON templates (tag);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    item TEXT NOT NULL,
    tag BLOB NOT NULL,
    modality TEXT NOT NULL,
    box BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    audit_seq INTEGER
);
"""

#: Why a row was quarantined: its box failed authentication, it sits under another subject's tag
#: (or modality), it is a template whose subject has no face record, or its face record is damaged.
QUARANTINE_REASONS = ("authentication", "misfiled", "orphan", "record_damaged")


@dataclass(frozen=True)
class Quarantined:
    """One quarantined row as the file holds it: sealed bytes, never opened again."""

    id: int
    item: str  # "record" | "template"
    tag: bytes
    modality: str
    reason: str
    at: float
    audit_seq: int | None


def damaged(path: Path, exc: BaseException) -> StoreDamaged:
    return StoreDamaged(path, WHAT, exc)


class GalleryDb:
    """The gallery file. Not thread-safe on its own: the ``Gallery`` facade holds one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = connect(path)

    # ------------------------------------------------------------------ lifecycle

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the gallery is closed")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a full or read-only disk: the WAL stays, SQLite replays it
                log.warning("gallery checkpoint at close failed (%s)", exc.__class__.__name__)
            finally:
                self._conn.close()
                self._conn = None

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn, self.path)

    def scrub(self) -> None:
        """Return freed pages to the file system and empty the WAL so no old ciphertext lingers.

        ``secure_delete`` has already zeroed the freed content inside the pages. A disk that cannot
        take the checkpoint now leaves it for the next one (logged, not raised)."""
        try:
            self.conn.execute("PRAGMA incremental_vacuum")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.warning("gallery scrub postponed (%s)", exc.__class__.__name__)

    # ------------------------------------------------------------------ meta

    def meta(self) -> dict[str, object]:
        return {str(k): v for k, v in self._read("SELECT name, value FROM meta").fetchall()}

    def init_meta(self, dim: int, key_check: bytes) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT INTO meta VALUES ('dim', ?)", (dim,))
            conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (key_check,))

    # ------------------------------------------------------------------ reading

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from None

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[tuple[object, ...]]:
        """Rows of a cursor; a page that cannot be read mid-scan is a ``StoreDamaged``."""
        while True:
            try:
                row = cursor.fetchone()
            except sqlite3.DatabaseError as exc:
                raise damaged(self.path, exc) from None
            if row is None:
                return
            yield tuple(row)

    def record_rows(self, modality: str) -> Iterator[tuple[bytes, bytes]]:
        """(tag, box) of every record of ``modality``."""
        cur = self._read("SELECT CAST(tag AS BLOB), CAST(box AS BLOB) FROM records WHERE modality = ?", (modality,))
        for tag, box in self._rows(cur):
            yield _blob(tag), _blob(box)

    def all_records(self) -> list[tuple[bytes, str, bytes]]:
        cur = self._read("SELECT CAST(tag AS BLOB), modality, CAST(box AS BLOB) FROM records")
        return [(_blob(t), str(m), _blob(b)) for t, m, b in self._rows(cur)]

    def template_count(self) -> int:
        return int(self._read("SELECT count(*) FROM templates").fetchone()[0])

    def template_rows(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(row id, tag, box) of every face template, in row order."""
        cur = self._read("SELECT id, CAST(tag AS BLOB), CAST(box AS BLOB) FROM templates ORDER BY id")
        for row_id, tag, box in self._rows(cur):
            yield _int(row_id), _blob(tag), _blob(box)

    def record_box(self, tag: bytes, modality: str) -> bytes | None:
        row = self._read(
            "SELECT CAST(box AS BLOB) FROM records WHERE tag = ? AND modality = ?", (tag, modality)
        ).fetchone()
        return _blob(row[0]) if row else None

    def modalities_of(self, tag: bytes) -> set[str]:
        return {str(m) for (m,) in self._read("SELECT modality FROM records WHERE tag = ?", (tag,))}

    def next_template_id(self) -> int:
        return _int(self._read("SELECT coalesce(max(id), 0) FROM templates").fetchone()[0]) + 1

    # ------------------------------------------------------------------ writing (inside a transaction)

    @staticmethod
    def put_record(conn: sqlite3.Connection, tag: bytes, modality: str, box: bytes) -> None:
        conn.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (tag, modality, box))

    @staticmethod
    def add_template(conn: sqlite3.Connection, tag: bytes, box: bytes) -> int:
        cur = conn.execute("INSERT INTO templates (tag, box) VALUES (?, ?)", (tag, box))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    @staticmethod
    def drop_templates(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
        conn.executemany("DELETE FROM templates WHERE id = ?", [(i,) for i in ids])

    @staticmethod
    def drop_subject(conn: sqlite3.Connection, tag: bytes, modalities: Iterable[str], *, templates: bool) -> int:
        """Delete the subject's records of ``modalities`` (and face templates); returns templates deleted.
        Quarantined rows of the subject go with them: damaged or not, they are the person's data."""
        count = conn.execute("DELETE FROM templates WHERE tag = ?", (tag,)).rowcount if templates else 0
        targets = list(modalities)
        conn.executemany("DELETE FROM records WHERE tag = ? AND modality = ?", [(tag, m) for m in targets])
        if templates:
            count += conn.execute("DELETE FROM quarantine WHERE tag = ? AND item = 'template'", (tag,)).rowcount
        conn.executemany(
            "DELETE FROM quarantine WHERE tag = ? AND item = 'record' AND modality = ?", [(tag, m) for m in targets]
        )
        return int(count)

    # ------------------------------------------------------------------ quarantine

    def quarantine(
        self, records: Iterable[tuple[bytes, str, str]], templates: Iterable[tuple[int, str]], at: float | None = None
    ) -> list[int]:
        """Move records ``(tag, modality, reason)`` and templates ``(row id, reason)`` into the
        quarantine in one transaction; returns the new quarantine ids in that order."""
        when = time.time() if at is None else at
        ids: list[int] = []
        with self.transaction() as conn:
            for tag, modality, reason in records:
                cur = conn.execute(
                    "INSERT INTO quarantine (item, tag, modality, box, reason, at) "
                    "SELECT 'record', tag, modality, box, ?, ? FROM records WHERE tag = ? AND modality = ?",
                    (reason, when, tag, modality),
                )
                conn.execute("DELETE FROM records WHERE tag = ? AND modality = ?", (tag, modality))
                ids.append(int(cur.lastrowid or 0))
            for row_id, reason in templates:
                cur = conn.execute(
                    "INSERT INTO quarantine (item, tag, modality, box, reason, at) "
                    "SELECT 'template', tag, 'face', box, ?, ? FROM templates WHERE id = ?",
                    (reason, when, row_id),
                )
                conn.execute("DELETE FROM templates WHERE id = ?", (row_id,))
                ids.append(int(cur.lastrowid or 0))
        return ids

    def quarantined(self) -> list[Quarantined]:
        cur = self._read(
            "SELECT id, item, CAST(tag AS BLOB), modality, reason, at, audit_seq FROM quarantine ORDER BY id"
        )
        return [
            Quarantined(_int(i), str(it), _blob(t), str(m), str(r), float(str(a)), None if s is None else _int(s))
            for i, it, t, m, r, a, s in self._rows(cur)
        ]

    def mark_reported(self, reported: Iterable[tuple[int, int]]) -> None:
        """Store the audit record of each quarantine row ``(id, audit_seq)``."""
        with self.transaction() as conn:
            conn.executemany("UPDATE quarantine SET audit_seq = ? WHERE id = ?", [(s, i) for i, s in reported])

    def copy_rows_from(self, other: Path) -> int:
        """Copy the rows still readable in a damaged gallery file (records, templates, quarantine;
        each table up to its first unreadable page) into this one; returns rows copied."""
        try:
            src = sqlite3.connect(f"file:{other}?mode=ro", uri=True)
        except sqlite3.Error:
            return 0
        copied = 0
        try:
            for table, columns in (
                ("records", "tag, modality, box"),
                ("templates", "id, tag, box"),
                ("quarantine", "id, item, tag, modality, box, reason, at, audit_seq"),
            ):
                rows: list[tuple[object, ...]] = []
                try:
                    cur = src.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - fixed names
                    while (row := cur.fetchone()) is not None:
                        rows.append(tuple(row))
                except sqlite3.Error:
                    pass  # what came before the damaged page is kept
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    with self.transaction() as conn:
                        conn.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608
                    copied += len(rows)
        finally:
            src.close()
        return copied

    def clear_quarantine(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("DELETE FROM quarantine").rowcount)


def quarantine_summary(path: Path) -> list[Quarantined]:
    """The quarantine of a gallery file, read-only and without the key (``edge status``, selftest).
    Empty when the file or the table is absent; ``StoreDamaged`` when the file cannot be read."""
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise damaged(path, exc) from None
    try:
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'").fetchone()
        if not has:
            return []
        rows = conn.execute(
            "SELECT id, item, CAST(tag AS BLOB), modality, reason, at, audit_seq FROM quarantine ORDER BY id"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise damaged(path, exc) from None
    finally:
        conn.close()
    return [
        Quarantined(int(i), str(it), bytes(t), str(m), str(r), float(a), None if s is None else int(s))
        for i, it, t, m, r, a, s in rows
    ]


def has_data(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    except sqlite3.Error as exc:
        raise StorageError(
            f"cannot open the gallery {path} ({exc})", hint="check the state directory is there and writable"
        ) from None
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective only on a new file
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        # 512 KiB page cache (default 2 MB): the load is one sequential scan, and a change touches a
        # few B-tree pages; measured -1.7 MB of peak RSS opening 100k templates, no slower
        conn.execute("PRAGMA cache_size = -512")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise damaged(path, exc) from None
    return conn


def _blob(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise StorageError("a gallery row holds a value of the wrong type (file altered)")


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StorageError("a gallery row holds a value of the wrong type (file altered)")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; a failed write is a ``StorageError``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            check_write(self.path)
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise _write_error(self.path, exc) from None
        return self.conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as error:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise _write_error(self.path, error) from None
            HEALTH.succeeded(WHAT)
            return
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise _write_error(self.path, exc) from None


def _write_error(path: Path, exc: sqlite3.DatabaseError) -> StorageError:
    error = storage_error(path, WHAT, exc)
    if isinstance(error, StorageUnavailable):
        HEALTH.failed(WHAT, error.cause)
    return error
