"""Anti-passback: who is inside an area, so a card or face cannot be passed back to let a second
person in. Kept in ``passback.sqlite3`` across restarts.

The site's roster says which gates lead into an area (``in``) and out of it (``out``). An ``in``
gate refuses a grant with reason ``anti_passback`` while the person is recorded inside; every
granted passage through an ``in`` or ``out`` gate of the area records where the person now is.
Passages at the area's other gates arrive as their signed ``access`` events (verified against the
roster's keys); the latest passage wins, ordered by event time, then gate id and sequence number,
so every gate of the area converges on the same answer whatever order the events arrive in.
Exit is never refused (people must always be able to leave); a person never seen is outside.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.state import open_store

log = logging.getLogger(__name__)

Direction = Literal["in", "out"]
ANTI_PASSBACK = "anti_passback"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS presence (
    area TEXT NOT NULL,
    subject TEXT NOT NULL,
    inside INTEGER NOT NULL,
    at REAL NOT NULL,
    gate TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (area, subject)
);
"""


@dataclass(frozen=True)
class Passage:
    """A granted passage through a gate of ``area``."""

    area: str
    subject: str
    direction: Direction
    at: float
    gate: str
    seq: int

    def order(self) -> tuple[float, str, int]:
        return (self.at, self.gate, self.seq)


class PassbackLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_store(path, _SCHEMA, "anti-passback log")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def inside(self, area: str, subject: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT inside FROM presence WHERE area = ? AND subject = ?", (area, subject)
            ).fetchone()
        return bool(row and row[0])

    def allows(self, area: str, direction: Direction, subject: str) -> bool:
        """Whether a grant may stand: an ``in`` gate refuses someone already inside; exits never."""
        return direction == "out" or not self.inside(area, subject)

    def record(self, passage: Passage) -> bool:
        """Record a passage unless a later one is already known; True when it changed the state.
        A disk that refuses the write loses this passage (logged and alarmed by the storage
        health), never the grant: anti-passback degrades open, the door does not stop."""
        try:
            return self._record(passage)
        except sqlite3.OperationalError as exc:
            _unwritable(exc)
            return False

    def _record(self, passage: Passage) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT at, gate, seq FROM presence WHERE area = ? AND subject = ?", (passage.area, passage.subject)
            ).fetchone()
            if row is not None and (float(row[0]), str(row[1]), int(row[2])) >= passage.order():
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO presence (area, subject, inside, at, gate, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (passage.area, passage.subject, int(passage.direction == "in"), passage.at, passage.gate, passage.seq),
            )
            return True

    def forget(self, subject: str) -> int:
        """Drop a subject everywhere (removed from the list): no presence is kept without a reason."""
        try:
            with self._lock:
                return int(self._db.execute("DELETE FROM presence WHERE subject = ?", (subject,)).rowcount)
        except sqlite3.OperationalError as exc:
            _unwritable(exc)
            return 0


def _unwritable(exc: sqlite3.OperationalError) -> None:
    from edge.state_faults import classify
    from edge.state_health import HEALTH

    log.error("the anti-passback log cannot be written (%s); this passage is not recorded", exc)
    HEALTH.failed("passback", classify(exc) or "io")
