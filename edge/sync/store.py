"""What a gate remembers about template parcels: which it applied or refused, which wait for its sensor.

``sync.sqlite3`` in the state directory (WAL, ``synchronous=FULL``). It holds parcel ids, sender
ids, subjects and outcomes, and, for a fingerprint parcel waiting for the sensor, the parcel *as it
arrived*: still sealed to this gate's key and signed by its sender, so nothing readable is stored.
A parcel id is applied at most once, whatever the broker redelivers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from edge.state import open_store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    parcel BLOB PRIMARY KEY,
    sender TEXT NOT NULL,
    topic TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- applied | refused | waiting (for the sensor)
    subject TEXT,
    modality TEXT,
    message BLOB,                   -- the sealed parcel, only while waiting for the sensor
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    parcel BLOB PRIMARY KEY,
    recipient TEXT NOT NULL,
    topic TEXT NOT NULL,
    subject TEXT NOT NULL,
    modality TEXT NOT NULL,
    at REAL NOT NULL
);
"""

APPLIED = "applied"
REFUSED = "refused"
WAITING = "waiting"


@dataclass(frozen=True)
class Waiting:
    """A fingerprint parcel accepted for this gate, waiting for the sensor thread to install it."""

    parcel: bytes
    topic: str
    subject: str = field(repr=False)
    message: bytes = field(repr=False)


class SyncStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_store(path, _SCHEMA, "sync store")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def seen(self, parcel: bytes) -> str | None:
        """The recorded outcome for ``parcel``, or None when it was never handled."""
        with self._lock:
            row = self._db.execute("SELECT outcome FROM received WHERE parcel = ?", (parcel,)).fetchone()
        return None if row is None else str(row[0])

    def record(
        self,
        parcel: bytes,
        sender: str,
        topic: str,
        outcome: str,
        at: float,
        *,
        subject: str | None = None,
        modality: str | None = None,
        message: bytes | None = None,
    ) -> None:
        """Record (or update) what became of a parcel; ``message`` only for ``waiting``."""
        if (outcome == WAITING) != (message is not None):
            raise ValueError("only a parcel waiting for the sensor keeps its (sealed) message")
        with self._lock:
            self._db.execute(
                "INSERT INTO received (parcel, sender, topic, outcome, subject, modality, message, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(parcel) DO UPDATE SET outcome = excluded.outcome, "
                "subject = excluded.subject, modality = excluded.modality, message = excluded.message, at = excluded.at",
                (parcel, sender, topic, outcome, subject, modality, message, at),
            )

    def waiting(self) -> list[Waiting]:
        with self._lock:
            rows = self._db.execute(
                "SELECT parcel, topic, subject, message FROM received WHERE outcome = ? ORDER BY at, parcel",
                (WAITING,),
            ).fetchall()
        return [Waiting(bytes(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def applied(self) -> list[tuple[str, str, float]]:
        """(subject, modality, when) of every parcel applied here: for ``edge-site``-side reports and
        the fleet benchmark; no template, no parcel contents."""
        with self._lock:
            rows = self._db.execute(
                "SELECT subject, modality, at FROM received WHERE outcome = ? ORDER BY at, parcel", (APPLIED,)
            ).fetchall()
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    def sent(self, parcel: bytes, recipient: str, topic: str, subject: str, modality: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO sent (parcel, recipient, topic, subject, modality, at) VALUES (?, ?, ?, ?, ?, ?)",
                (parcel, recipient, topic, subject, modality, at),
            )

    def sent_parcels(self) -> list[tuple[str, str, str, str]]:
        """(topic, recipient, subject, modality) of every parcel this gate sent and still remembers."""
        with self._lock:
            rows = self._db.execute("SELECT topic, recipient, subject, modality FROM sent ORDER BY topic").fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def sent_topics(self, subject: str, modality: str | None = None) -> list[str]:
        """Topics of parcels this gate sent for ``subject`` (to clear them from the broker)."""
        with self._lock:
            if modality is None:
                rows = self._db.execute("SELECT topic FROM sent WHERE subject = ? ORDER BY topic", (subject,))
            else:
                rows = self._db.execute(
                    "SELECT topic FROM sent WHERE subject = ? AND modality = ? ORDER BY topic", (subject, modality)
                )
            return [str(r[0]) for r in rows.fetchall()]

    def forget_sent(self, topics: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM sent WHERE topic = ?", [(t,) for t in topics])
