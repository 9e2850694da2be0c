"""Two small ``BiometricStore`` implementations for tests and benchmarks.

They hold opaque blobs the caller provides (random bytes in tests; the real gallery encrypts its
templates). ``SqliteStore`` behaves like the real gallery's storage: one row per template, deletion
in one durable transaction, so benchmarks measure real deletion cost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path


class MemoryStore:
    def __init__(self, name: str, modality: str | None = None) -> None:
        self.name = name
        self.modality = modality
        self._lock = threading.Lock()
        self._templates: dict[str, list[bytes]] = {}

    def add(self, subject: str, template: bytes) -> None:
        with self._lock:
            self._templates.setdefault(subject, []).append(template)

    def subjects(self) -> set[str]:
        with self._lock:
            return set(self._templates)

    def has_subject(self, subject: str) -> bool:
        with self._lock:
            return subject in self._templates

    def delete_subject(self, subject: str) -> Mapping[str, object]:
        with self._lock:
            return {"templates": len(self._templates.pop(subject, []))}


class SqliteStore:
    """Templates in SQLite (WAL, synchronous=FULL); ``delete_subject`` reports slots and counts."""

    def __init__(self, path: Path, name: str, modality: str | None = None) -> None:
        self.name = name
        self.modality = modality
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS templates (slot INTEGER PRIMARY KEY, subject TEXT NOT NULL, blob BLOB NOT NULL)"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS templates_subject ON templates (subject)")

    def add(self, subject: str, template: bytes) -> int:
        with self._lock:
            cur = self._conn.execute("INSERT INTO templates (subject, blob) VALUES (?, ?)", (subject, template))
            return int(cur.lastrowid or 0)

    def add_many(self, rows: Iterable[tuple[str, bytes]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT INTO templates (subject, blob) VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")

    def subjects(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT DISTINCT subject FROM templates")}

    def has_subject(self, subject: str) -> bool:
        with self._lock:
            return (
                self._conn.execute("SELECT 1 FROM templates WHERE subject = ? LIMIT 1", (subject,)).fetchone()
                is not None
            )

    def delete_subject(self, subject: str) -> Mapping[str, object]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            slots = [int(r[0]) for r in self._conn.execute("SELECT slot FROM templates WHERE subject = ?", (subject,))]
            self._conn.execute("DELETE FROM templates WHERE subject = ?", (subject,))
            self._conn.execute("COMMIT")
        return {"templates": len(slots), "slots": slots}

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
