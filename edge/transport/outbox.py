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

Degrading (issue 16; docs/operations.md "Degrading: stores and disk"):
- A write that fails because the disk is full, the state directory is read-only or the device
  reports I/O errors does not lose the event and does not stop the gate: the outbox *holds*
  events in memory (signed, with their sequence numbers, in order) up to ``hold_max``, reports
  the fault once to ``edge.state_health`` (one ``disk_full``/``disk_read_only`` alarm for the
  whole state directory) and writes what it holds, in one transaction, as soon as a write works
  again (tried at most once a second from ``append``, ``pending`` and ``prune``). Past
  ``hold_max`` the oldest held events are dropped and announced by ``outbox_dropped`` (the
  sequence range) once the outbox can write again.
- Held events are published from memory too, so the site hears the alarm while the disk is full,
  but only while the high-water mark of the numbers handed out from memory can be recorded in
  ``outbox.seq`` (a small file preallocated when the disk had room, overwritten in place, which a
  full disk still takes). If the agent dies while holding, the next start continues the
  numbering after that mark and announces the held range it lost (``outbox_dropped``): a number
  is never used twice and a gap is never silent. On a read-only file system the mark cannot be
  written: held events then wait in memory unpublished until a write works.
- The same file keeps a reservation of sequence numbers 1000 ahead, so a fresh outbox started
  after the old file was damaged (``open_or_replace``) continues above every number used before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from edge.errors import StorageError, StorageUnavailable, StoreDamaged
from edge.events.kinds import Alarm
from edge.state_faults import check_inplace_write, check_write, classify, storage_error
from edge.state_health import HEALTH, StorageHealth

log = logging.getLogger(__name__)

AlarmCallback = Callable[[Alarm], None]

WHAT = "outbox"
#: Sequence numbers reserved ahead in ``outbox.seq`` (one small in-place write per block).
SEQ_BLOCK = 1000
#: How often a held outbox tries to write (seconds, monotonic).
RETRY_S = 1.0

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


class SeqMark:
    """``outbox.seq``: the sequence numbers the outbox may have handed out beyond its database.

    64 bytes, preallocated while the disk has room and then only overwritten in place (no new
    blocks, so a full disk still takes it): a magic, ``held`` (the highest number handed to an
    event held in memory), ``reserved`` (numbers below it may have been used: a fresh outbox
    starts above it) and a CRC. A file that cannot be opened or written only disables what needs
    it (publishing held events; the reservation); the outbox itself still works."""

    MAGIC = b"EDGESEQ1"
    SIZE = 64

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.held = 0
        self.reserved = 0
        self._fd: int | None = None
        if path is None:  # an outbox in memory: nothing to record beside it
            return
        try:
            if path.exists():
                self.held, self.reserved = _parse_mark(path.read_bytes())
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < self.SIZE:
                os.pwrite(fd, self._encode(self.held, self.reserved), 0)
                os.fsync(fd)
            self._fd = fd
        except OSError as exc:
            log.warning("outbox sequence mark %s unavailable (%s)", path.name, exc.strerror)

    def _encode(self, held: int, reserved: int) -> bytes:
        body = self.MAGIC + struct.pack("<QQ", held, reserved)
        return (body + struct.pack("<I", zlib.crc32(body))).ljust(self.SIZE, b"\0")

    def write(self, *, held: int | None = None, reserved: int | None = None) -> bool:
        """Record new values in place (synced); False when the file cannot take them."""
        if self._fd is None:
            return False
        new_held = self.held if held is None else max(self.held, held)
        new_reserved = self.reserved if reserved is None else max(self.reserved, reserved)
        try:
            if self.path is not None:
                check_inplace_write(self.path)
            os.pwrite(self._fd, self._encode(new_held, new_reserved), 0)
            os.fdatasync(self._fd)
        except OSError:
            return False
        self.held, self.reserved = new_held, new_reserved
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _parse_mark(data: bytes) -> tuple[int, int]:
    body = data[: len(SeqMark.MAGIC) + 16]
    if len(data) < len(body) + 4 or not body.startswith(SeqMark.MAGIC):
        return 0, 0
    (crc,) = struct.unpack_from("<I", data, len(body))
    if crc != zlib.crc32(body):
        return 0, 0
    held, reserved = struct.unpack_from("<QQ", body, len(SeqMark.MAGIC))
    return int(held), int(reserved)


def mark_path(path: Path) -> Path:
    """``outbox.sqlite3`` -> ``outbox.seq`` beside it."""
    stem = path.name[: -len(".sqlite3")] if path.name.endswith(".sqlite3") else path.name
    return path.with_name(stem + ".seq")


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
        hold_max: int = 10_000,
        health: StorageHealth | None = None,
        start_after: int = 0,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.warn_fraction = warn_fraction
        self.clock = clock
        self.hold_max = hold_max
        self.health = health if health is not None else HEALTH
        self._on_alarm: AlarmCallback | None = None
        self._lock = threading.RLock()
        self._high = False
        self._in_alarm = False
        self._listeners: list[Callable[[], None]] = []
        self._held: dict[int, Entry] = {}  # events waiting in memory while the disk refuses writes
        self._held_dropped: list[tuple[int, int, int]] = []  # (first seq, last seq, count) not yet announced
        self._acked_unremoved: set[int] = set()  # acknowledged rows whose delete the disk refused
        self._fault: str | None = None
        self._retry_at = 0.0
        self._next_id = 0
        self._announce: list[Alarm] = []  # alarms found before anyone listens (a lost held range)
        self.dropped_total = 0  # events dropped from memory (the soak reports it)
        memory = str(path) == ":memory:"
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open the outbox {self.path}: {exc}", hint="check the state directory is writable"
            ) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "retain" not in columns:  # an outbox written before retained rows existed
                self._db.execute("ALTER TABLE outbox ADD COLUMN retain INTEGER NOT NULL DEFAULT 0")
            # Row count kept in memory (COUNT(*) is a scan); this object is the only writer.
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            last = self.last_seq()
        except sqlite3.Error as exc:
            self._db.close()
            error = storage_error(self.path, WHAT, exc)
            if isinstance(error, StoreDamaged):
                raise error from None
            raise StorageError(f"cannot open the outbox {self.path}: {exc}", hint=error.hint) from None
        self._mark = SeqMark(None if memory else mark_path(self.path))
        self._mem_seq = last  # the last number handed out, committed or held
        self._settle_mark(last, start_after)
        self.on_alarm = on_alarm

    @classmethod
    def in_memory(cls, path: Path, *, health: StorageHealth | None = None) -> Outbox:
        """An outbox in memory beside ``path`` (which cannot be opened: a read-only state directory):
        events are published but do not survive a restart. Numbering continues after what
        ``outbox.seq`` says was used, when it can be read."""
        mark = SeqMark(mark_path(path))
        mark.close()
        box = cls(":memory:", health=health, start_after=max(mark.held, mark.reserved))
        log.error("the outbox runs in memory: events are published but lost if the agent stops before delivery")
        return box

    @classmethod
    def open_or_replace(
        cls,
        path: Path,
        *,
        max_events: int = 100_000,
        max_age_s: float = 30 * 86400.0,
        health: StorageHealth | None = None,
    ) -> Outbox:
        """Open the outbox; a damaged file is set aside (``edge.state_recovery``), the rows still
        readable in it are queued again in a fresh one, and numbering continues above every number
        the old file may have used (the range in between is named in the ``store_replaced`` alarm).
        Raises ``StorageError`` only if no outbox can be opened at all."""
        from edge.state_recovery import set_aside, write_note

        try:
            return cls(path, max_events=max_events, max_age_s=max_age_s, health=health)
        except StoreDamaged as exc:
            info = set_aside(path, "outbox", exc.detail)
        rows, last = _salvage(path.with_name(info.aside))
        mark = SeqMark(mark_path(path))
        mark.close()
        start = max(last, mark.held, mark.reserved)
        box = cls(path, max_events=max_events, max_age_s=max_age_s, health=health, start_after=start)
        with box._lock, box._tx():
            box._db.executemany(
                "INSERT INTO outbox (seq, topic, payload, created, retain) VALUES (?, ?, ?, ?, ?)",
                [(e.seq, e.topic, e.payload, e.created, int(e.retain)) for e in rows],
            )
            box._count += len(rows)
        lost_first, lost_last = (last + 1, start) if start > last else (None, None)
        write_note(path.parent, replace(info, salvaged=len(rows), first_lost_seq=lost_first, last_lost_seq=lost_last))
        log.error("fresh outbox started: %d queued events salvaged, numbering continues after %d", len(rows), start)
        return box

    # ------------------------------------------------------------------ alarms

    @property
    def on_alarm(self) -> AlarmCallback | None:
        return self._on_alarm

    @on_alarm.setter
    def on_alarm(self, callback: AlarmCallback | None) -> None:
        """Set where alarms go; alarms found at open (a lost held range) go there now."""
        self._on_alarm = callback
        if callback is not None and self._announce:
            pending, self._announce = self._announce, []
            for alarm in pending:
                self._alarm(alarm)

    def _settle_mark(self, last: int, start_after: int) -> None:
        """At open: continue after numbers held in memory by a run that died (announcing them as
        dropped), or after ``start_after`` (a fresh outbox); keep a reservation ahead."""
        floor = max(last, start_after)
        if self._mark.held > floor:
            first, end = floor + 1, self._mark.held
            log.error("the last run died holding events %s..%s in memory; they are lost (announced)", first, end)
            self._announce.append(
                Alarm(
                    "outbox_dropped",
                    "critical",
                    component="outbox",
                    count=end - first + 1,
                    first_seq=first,
                    last_seq=end,
                )
            )
            floor = end
        if floor > last:
            try:
                with self._tx():
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (floor,))
            except StorageError as exc:
                log.error("could not move the outbox numbering forward (%s); events are held", exc.one_line())
                self._fault = classify(exc) or "io"
            self._mem_seq = floor
        if self._mark.reserved <= floor:
            self._mark.write(reserved=floor + SEQ_BLOCK)

    # ------------------------------------------------------------------ writing
    def next_seq(self) -> int:
        with self._lock:
            self._retry()
            if self._fault is None and not self._held:
                try:
                    with self._tx():
                        seq = self._take_seq()
                except StorageUnavailable as exc:
                    self._failed(exc.cause)
                else:
                    self._mem_seq = seq
                    return seq
            return self._hand_out()

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            return int(row[0]) if row else 0

    def append(self, topic: str, build: Callable[[int], bytes], *, durable: bool = False) -> int:
        """Allocate a sequence number, ``build(seq)`` the signed payload, commit both; return seq.

        While the disk refuses writes the event is held in memory instead (see the module
        docstring) and written as soon as it takes writes again; with ``durable`` (a deletion
        receipt) it is not: ``StorageUnavailable`` is raised and nothing is queued, so the caller
        keeps its unit of work open until the receipt is on disk."""
        with self._lock:
            self._retry(force=durable)
            if durable and (self._fault is not None or self._held):
                raise StorageUnavailable(self.path, WHAT, self._fault or "io")
            if self._fault is None and not self._held:
                try:
                    with self._tx():
                        seq = self._take_seq()
                        payload = build(seq)
                        self._db.execute(
                            "INSERT INTO outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)",
                            (seq, topic, payload, self.clock()),
                        )
                        self._count += 1
                except StorageUnavailable as exc:
                    self._failed(exc.cause)
                    if durable:
                        raise
                else:
                    self._mem_seq = seq
                    self._enforce_bounds()
                    self._notify()
                    return seq
            seq = self._hand_out()
            self._hold(Entry(self._take_id(), seq, topic, build(seq), self.clock()))
        self._notify()
        return seq

    def put(self, topic: str, payload: bytes, seq: int = 0, *, retain: bool = False) -> int:
        """Queue an already signed payload (``retain``: published as the topic's retained message;
        an empty retained payload clears it); return its row id."""
        with self._lock:
            self._retry()
            if self._fault is None and not self._held:
                try:
                    with self._tx():
                        cur = self._db.execute(
                            "INSERT INTO outbox (seq, topic, payload, created, retain) VALUES (?, ?, ?, ?, ?)",
                            (seq, topic, payload, self.clock(), int(retain)),
                        )
                        self._count += 1
                except StorageUnavailable as exc:
                    self._failed(exc.cause)
                else:
                    row_id = int(cur.lastrowid or 0)
                    self._enforce_bounds()
                    self._notify()
                    return row_id
            row_id = self._take_id()
            self._hold(Entry(row_id, seq, topic, payload, self.clock(), retain))
        self._notify()
        return row_id

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs after every append (the publisher uses it to wake up)."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ holding
    @property
    def holding(self) -> int:
        """Events held in memory now (0 unless the disk refuses writes)."""
        with self._lock:
            return len(self._held)

    @property
    def fault(self) -> str | None:
        """``full``, ``read_only`` or ``io`` while writes fail, else None."""
        return self._fault

    def _failed(self, cause: str) -> None:
        if self._fault is None:
            log.error("the outbox cannot write (%s): events are held in memory (at most %s)", cause, self.hold_max)
        self._fault = cause
        self._retry_at = time.monotonic() + RETRY_S
        self.health.failed(WHAT, cause)

    def _hand_out(self) -> int:
        """The next number for a held event, recorded in ``outbox.seq`` before it is used."""
        seq = self._mem_seq + 1
        self._mem_seq = seq
        self._mark.write(held=seq)
        return seq

    def _take_id(self) -> int:
        if not self._held:
            row = self._db.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0), "
                "coalesce((SELECT max(id) FROM outbox), 0))"
            ).fetchone()
            self._next_id = max(self._next_id, int(row[0] or 0) + 1)
        row_id = self._next_id
        self._next_id += 1
        return row_id

    def _hold(self, entry: Entry) -> None:
        while len(self._held) >= self.hold_max:
            oldest = self._held.pop(next(iter(self._held)))
            self.dropped_total += 1
            if oldest.seq:
                last = self._held_dropped[-1] if self._held_dropped else None
                if last is not None and last[1] + 1 == oldest.seq:
                    self._held_dropped[-1] = (last[0], oldest.seq, last[2] + 1)
                else:
                    self._held_dropped.append((oldest.seq, oldest.seq, 1))
        self._held[entry.id] = entry

    def _retry(self, *, force: bool = False) -> None:
        """Write what is held (and the numbering) in one transaction, at most once a second."""
        if self._fault is None and not self._held:
            return
        now = time.monotonic()
        if not force and now < self._retry_at:
            return
        self._retry_at = now + RETRY_S
        held = list(self._held.values())
        try:
            with self._tx():
                if self._acked_unremoved:
                    self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in self._acked_unremoved])
                self._db.executemany(
                    "INSERT INTO outbox (id, seq, topic, payload, created, retain) VALUES (?, ?, ?, ?, ?, ?)",
                    [(e.id, e.seq, e.topic, e.payload, e.created, int(e.retain)) for e in held],
                )
                row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
                if self._mem_seq > (int(row[0]) if row else 0):
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (self._mem_seq,))
                if self._next_id:  # row ids handed to held events (some acknowledged, never written) stay used:
                    # the publisher's cursor is past them, so the next row must come after them
                    self._db.execute(
                        "DELETE FROM sqlite_sequence WHERE name = 'outbox' AND seq < ?", (self._next_id - 1,)
                    )
                    self._db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? "
                        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
                        (self._next_id - 1,),
                    )
        except StorageUnavailable as exc:
            self._fault = exc.cause
            self.health.failed(WHAT, exc.cause)
            return
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self._held.clear()
        self._acked_unremoved.clear()
        cause, self._fault = self._fault, None
        log.info("the outbox writes again: %s held event(s) written", len(held))
        self.health.succeeded(WHAT)
        dropped, self._held_dropped = self._held_dropped, []
        for first, last, count in dropped:
            log.error("events %s..%s were dropped from memory while the disk refused writes (%s)", first, last, cause)
            self._alarm(
                Alarm("outbox_dropped", "critical", component="outbox", count=count, first_seq=first, last_seq=last)
            )
        self._enforce_bounds()

    # ------------------------------------------------------------------ draining
    def pending(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        with self._lock:
            self._retry()
            try:
                rows = self._db.execute(
                    "SELECT id, seq, topic, payload, created, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                cause = classify(exc) or "io"
                log.error("the outbox cannot be read (%s)", cause)
                self.health.failed(WHAT, cause)
                rows = []
            out = [Entry(int(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4]), bool(r[5])) for r in rows]
            out = [e for e in out if e.id not in self._acked_unremoved]
            for entry in self._held.values():
                if len(out) >= limit:
                    break
                if entry.id <= after_id:
                    continue
                if entry.seq and entry.seq > self._mark.held:
                    break  # its number is not on record: published only once it is written
                out.append(entry)
        return out

    def remove(self, ids: Iterable[int]) -> None:
        """Delete acknowledged rows. Not fsynced: a deletion lost to power loss means a resend, which
        the verifier drops as a duplicate; an fsync per PUBACK batch would halve the drain rate."""
        wanted = list(ids)
        if not wanted:
            return
        with self._lock:
            batch = [(i,) for i in wanted if self._held.pop(i, None) is None]
            if not batch:
                return
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._tx():
                    before = self._db.total_changes
                    self._db.executemany("DELETE FROM outbox WHERE id = ?", batch)
                    self._count -= self._db.total_changes - before
            except StorageUnavailable as exc:  # kept, not resent: deleted when the disk takes writes
                self._acked_unremoved.update(i for (i,) in batch)
                self._failed(exc.cause)
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
        with self._lock:
            held = self._held.pop(row_id, None)
            seq = held.seq if held is not None else 0
            if held is None:
                try:
                    with self._tx():
                        self._db.execute(
                            "INSERT OR REPLACE INTO rejected (id, seq, topic, payload, created, reason, rejected_at) "
                            "SELECT id, seq, topic, payload, created, ?, ? FROM outbox WHERE id = ?",
                            (reason, self.clock(), row_id),
                        )
                        row = self._db.execute("SELECT seq FROM outbox WHERE id = ?", (row_id,)).fetchone()
                        self._count -= self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
                    seq = int(row[0]) if row else 0
                except StorageUnavailable as exc:
                    self._failed(exc.cause)
        log.error("the broker refused event row %s (reason code 0x%02x); kept in the rejected table", row_id, reason)
        self._alarm(Alarm("outbox_rejected", "critical", component="outbox", count=1, first_seq=seq, last_seq=seq))

    def depth(self) -> int:
        with self._lock:
            return self._count + len(self._held)

    def oldest_age_s(self) -> float:
        with self._lock:
            oldest = self._oldest_created()
            held = next(iter(self._held.values())).created if self._held else None
        times = [t for t in (oldest, held) if t is not None]
        return max(0.0, self.clock() - min(times)) if times else 0.0

    def rejected_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])

    def prune(self) -> int:
        """Apply the age and size bounds now and retry held writes (the publisher calls this)."""
        with self._lock:
            self._retry(force=True)
            dropped = self._enforce_bounds()
        self.health.tick()
        return dropped

    def close(self) -> None:
        with self._lock:
            if self._held or self._fault is not None:
                self._retry(force=True)
            if self._held:
                log.error(
                    "closing with %s event(s) held in memory (%s..%s): the next start announces them",
                    len(self._held),
                    min(e.seq for e in self._held.values()),
                    self._mem_seq,
                )
            self._db.close()
            self._mark.close()

    # ------------------------------------------------------------------ internals
    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def _take_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        seq = (int(row[0]) if row else 0) + 1
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (seq,))
        if seq >= self._mark.reserved:
            self._mark.write(reserved=seq + SEQ_BLOCK)
        return seq

    def _oldest_created(self) -> float | None:
        row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        return float(row[0]) if row else None

    def _enforce_bounds(self) -> int:
        """Drop from the head (oldest id first): rows past the age bound, then rows over the count bound."""
        dropped: list[tuple[int, int]] = []
        cutoff = self.clock() - self.max_age_s
        try:
            with self._tx():
                while (oldest := self._oldest_created()) is not None and oldest < cutoff:
                    rows = self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 500) "
                        "AND created < ? RETURNING id, seq",
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
        except StorageUnavailable as exc:  # nothing dropped; tried again at the next prune
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            self._failed(exc.cause)
            return 0
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
        if self._on_alarm is None or self._in_alarm:
            if self._on_alarm is None and alarm.code == "outbox_dropped":
                self._announce.append(alarm)  # nobody listens yet: said when someone does
            return
        self._in_alarm = True
        try:
            self._on_alarm(alarm)
        except Exception:
            log.exception("outbox alarm callback failed for %s", alarm.code)
        finally:
            self._in_alarm = False

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()


def _salvage(path: Path) -> tuple[list[Entry], int]:
    """The queued rows and the last sequence number still readable in a damaged outbox file."""
    rows: list[Entry] = []
    last = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows, last
    try:
        with contextlib_suppress():
            row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
            last = int(row[0]) if row else 0
        with contextlib_suppress():
            cur = db.execute("SELECT id, seq, topic, payload, created, retain FROM outbox ORDER BY id")
            while (r := cur.fetchone()) is not None:
                rows.append(Entry(int(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4]), bool(r[5])))
    finally:
        db.close()
    last = max([last, *(e.seq for e in rows)])
    return rows, last


def contextlib_suppress() -> contextlib.suppress:
    """Reading a damaged file stops at the first unreadable page; what came before is kept."""
    return contextlib.suppress(sqlite3.Error, ValueError, TypeError)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (nested use joins the outer transaction).

    A write the disk refuses is a ``StorageUnavailable`` (``full``, ``read_only``, ``io``)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.outer = False

    def __enter__(self) -> None:
        if self.db.in_transaction:
            self.outer = True
            return
        try:
            check_write(self.path)
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _unavailable(self.path, exc) from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.outer:
            return
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise _unavailable(self.path, error) from None
            return
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _unavailable(self.path, exc) from None


def _unavailable(path: Path, exc: sqlite3.Error) -> StorageError:
    """A failed write as ``StorageUnavailable`` (a damaged page counts as an I/O failure here: the
    events are held, and the next start sets the file aside)."""
    error = storage_error(path, WHAT, exc)
    if isinstance(error, StorageUnavailable):
        return error
    return StorageUnavailable(path, WHAT, "io")
