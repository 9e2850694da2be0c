"""The durable outbox: signed events wait here, on disk, until the broker acknowledges them.

Policy (docs/mqtt.md):
- An event is committed to SQLite (WAL, ``synchronous=FULL``: it survives power loss) before the
  publisher sees it; its sequence number is allocated in the same transaction, so a crash never
  leaves a gap or a reused number.
- The publisher sends rows in id order and deletes a row only when its PUBACK arrives. Deletions are
  committed in batches; a deletion lost to a crash means a resend, which the verifier drops as a
  duplicate (cti and seq), never a loss.
- Bounds: at most ``max_events`` rows and nothing older than ``max_age_s``. When a bound is hit the
  OLDEST events are dropped (the newest state of the gate matters most) and an ``outbox_dropped``
  alarm names the dropped sequence range. Before that, when the outbox passes ``warn_fraction`` of
  either bound, an ``outbox_high`` alarm is raised once (cleared below half of the bound).
- A row the broker refuses (PUBACK reason code >= 0x80, e.g. not authorised) is moved to the
  ``rejected`` table, kept for the installer, and raises an ``outbox_rejected`` alarm.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.errors import StorageError
from edge.events.kinds import Alarm

log = logging.getLogger(__name__)

AlarmCallback = Callable[[Alarm], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    reason INTEGER NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    seq: int
    topic: str
    payload: bytes
    created: float
    #: published retained (template parcels, so a gate that was offline finds them); events are not
    retain: bool = False


class Outbox:
    """SQLite outbox plus the device's persisted event sequence number (a ``SeqStore``)."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_events: int = 100_000,
        max_age_s: float = 30 * 86400.0,
        warn_fraction: float = 0.8,
        on_alarm: AlarmCallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.warn_fraction = warn_fraction
        self.on_alarm = on_alarm
        self.clock = clock
        self._lock = threading.RLock()
        self._high = False
        self._in_alarm = False
        self._listeners: list[Callable[[], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "retain" not in columns:  # an outbox written before retained rows existed
                self._db.execute("ALTER TABLE outbox ADD COLUMN retain INTEGER NOT NULL DEFAULT 0")
            # Row count kept in memory (COUNT(*) is a scan); this object is the only writer.
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open the outbox {self.path}: {exc}", hint="check the state directory is writable"
            ) from None

    # ------------------------------------------------------------------ writing
    def next_seq(self) -> int:
        with self._lock, self._tx():
            return self._take_seq()

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            return int(row[0]) if row else 0

    def append(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Allocate a sequence number, ``build(seq)`` the signed payload, commit both; return seq."""
        with self._lock:
            with self._tx():
                seq = self._take_seq()
                payload = build(seq)
                self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                    (seq, topic, payload, self.clock()),
                )
                self._count += 1
            self._enforce_bounds()
        self._notify()
        return seq

    def put(self, topic: str, payload: bytes, seq: int = 0, *, retain: bool = False) -> int:
        """Queue an already signed payload (``retain``: published as the topic's retained message;
        an empty retained payload clears it); return its row id."""
        with self._lock:
            with self._tx():
                cur = self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload, created, retain) VALUES (?, ?, ?, ?, ?)",
                    (seq, topic, payload, self.clock(), int(retain)),
                )
                self._count += 1
            row_id = int(cur.lastrowid or 0)
            self._enforce_bounds()
        self._notify()
        return row_id

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs after every append (the publisher uses it to wake up)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ draining
    def pending(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, seq, topic, payload, created, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Entry(int(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4]), bool(r[5])) for r in rows]

    def remove(self, ids: Iterable[int]) -> None:
        """Delete acknowledged rows. Not fsynced: a deletion lost to power loss means a resend, which
        the verifier drops as a duplicate; an fsync per PUBACK batch would halve the drain rate."""
        batch = [(i,) for i in ids]
        if not batch:
            return
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._tx():
                    before = self._db.total_changes
                    self._db.executemany("DELETE FROM outbox WHERE id = ?", batch)
                    self._count -= self._db.total_changes - before
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._check_high()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make several appends one transaction (one fsync): bulk imports and benchmarks."""
        with self._lock:
            try:
                with self._tx():
                    yield
            except BaseException:
                self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                raise

    def reject(self, row_id: int, reason: int) -> None:
        """Move a row the broker refused to ``rejected`` (kept for the installer) and alarm."""
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO rejected (id, seq, topic, payload, created, reason, rejected_at) "
                "SELECT id, seq, topic, payload, created, ?, ? FROM outbox WHERE id = ?",
                (reason, self.clock(), row_id),
            )
            row = self._db.execute("SELECT seq FROM outbox WHERE id = ?", (row_id,)).fetchone()
            self._count -= self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
        log.error("the broker refused event row %s (reason code 0x%02x); kept in the rejected table", row_id, reason)
        seq = row[0] if row else 0
        self._alarm(Alarm("outbox_rejected", "critical", component="outbox", count=1, first_seq=seq, last_seq=seq))

    def depth(self) -> int:
        with self._lock:
            return self._count

    def oldest_age_s(self) -> float:
        with self._lock:
            oldest = self._oldest_created()
        return max(0.0, self.clock() - oldest) if oldest is not None else 0.0

    def rejected_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])

    def prune(self) -> int:
        """Apply the age and size bounds now (the publisher calls this periodically)."""
        with self._lock:
            return self._enforce_bounds()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals
    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def _take_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        seq = (int(row[0]) if row else 0) + 1
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (seq,))
        return seq

    def _oldest_created(self) -> float | None:
        row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def _enforce_bounds(self) -> int:
        """Drop from the head (oldest id first): rows past the age bound, then rows over the count bound."""
        dropped: list[tuple[int, int]] = []
        cutoff = self.clock() - self.max_age_s
        with self._tx():
            while (oldest := self._oldest_created()) is not None and oldest < cutoff:
                rows = self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 500) AND created < ? "
                    "RETURNING id, seq",
                    (cutoff,),
                ).fetchall()
                if not rows:
                    break  # an older row behind a newer head (clock stepped back): a later prune gets it
                dropped += rows
                self._count -= len(rows)
            if self._count > self.max_events:
                rows = self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?) RETURNING id, seq",
                    (self._count - self.max_events,),
                ).fetchall()
                dropped += rows
                self._count -= len(rows)
        if dropped:
            seqs = sorted(int(s) for _, s in dropped)
            log.error("outbox bound reached: dropped %s oldest events (seq %s..%s)", len(seqs), seqs[0], seqs[-1])
            self._alarm(
                Alarm(
                    "outbox_dropped",
                    "critical",
                    component="outbox",
                    count=len(seqs),
                    first_seq=seqs[0],
                    last_seq=seqs[-1],
                )
            )
        self._check_high()
        return len(dropped)

    def _check_high(self) -> None:
        count = self._count
        oldest = self._oldest_created()
        age = self.clock() - oldest if oldest is not None else 0.0
        fill = max(count / self.max_events, age / self.max_age_s)
        if not self._high and fill >= self.warn_fraction:
            self._high = True
            log.warning("outbox is %.0f%% full (by count or age); events will be dropped at 100%%", fill * 100)
            self._alarm(Alarm("outbox_high", "warning", "raised", "outbox", count=count))
        elif self._high and fill < self.warn_fraction / 2:
            self._high = False
            self._alarm(Alarm("outbox_high", "info", "cleared", "outbox", count=count))

    def _alarm(self, alarm: Alarm) -> None:
        # The alarm is itself an event queued here; an alarm raised while queueing it is only logged.
        if self.on_alarm is None or self._in_alarm:
            return
        self._in_alarm = True
        try:
            self.on_alarm(alarm)
        except Exception:
            log.exception("outbox alarm callback failed for %s", alarm.code)
        finally:
            self._in_alarm = False

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (nested use joins the outer transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if self.db.in_transaction:
            self.outer = True
            return
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.outer:
            return
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
