"""The outbox on a full, read-only or damaged disk: events held in memory, written when space
returns, every event it could not keep announced by number, never a number used twice.

Faults are made three ways: injected at the SQLite boundary (``edge.state_faults``: the same
error SQLite gives), SQLite's own ``max_page_count`` (a real SQLITE_FULL from the engine), and a
real size-limited tmpfs that fills up and is remounted read-only (where this machine may mount).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge import state_faults
from edge.errors import StoreDamaged
from edge.events.kinds import Alarm
from edge.state_health import StorageHealth
from edge.state_recovery import set_aside_files
from edge.testing.tinyfs import TinyFsUnavailable, tiny_fs
from edge.transport.outbox import Outbox


def _box(path: Path, hold_max: int = 10_000) -> tuple[Outbox, list[Alarm], StorageHealth, list[Alarm]]:
    alarms: list[Alarm] = []
    health_alarms: list[Alarm] = []
    health = StorageHealth()
    health.on_alarm = health_alarms.append
    box = Outbox(path, on_alarm=alarms.append, health=health, hold_max=hold_max)
    return box, alarms, health, health_alarms


def _payload(seq: int) -> bytes:
    return f"event-{seq}".encode()


def _rows(path: Path) -> list[tuple[int, bytes]]:
    db = sqlite3.connect(path)
    try:
        return [(int(s), bytes(p)) for s, p in db.execute("SELECT seq, payload FROM outbox ORDER BY id")]
    finally:
        db.close()


def test_a_full_disk_holds_events_in_memory_and_writes_them_when_space_returns(tmp_path: Path) -> None:
    box, alarms, health, health_alarms = _box(tmp_path / "outbox.sqlite3")
    assert [box.append("t", _payload) for _ in range(3)] == [1, 2, 3]
    with state_faults.inject("full", "outbox.sqlite3"):
        held = [box.append("t", _payload) for _ in range(4)]
        assert held == [4, 5, 6, 7], "numbering goes on in memory"
        assert box.holding == 4
        assert box.depth() == 7
        assert box.fault == "full"
        # the held events are published from memory (their numbers are on record in outbox.seq)
        assert [e.seq for e in box.pending(limit=10)] == [1, 2, 3, 4, 5, 6, 7]
        assert _rows(tmp_path / "outbox.sqlite3") == [(1, b"event-1"), (2, b"event-2"), (3, b"event-3")]
        box.prune()  # a retry while the disk is still full changes nothing
        assert box.holding == 4
    assert [(a.code, a.state, a.component) for a in health_alarms] == [("disk_full", "raised", "outbox")]
    box.prune()  # the publisher's periodic call: the disk takes writes again
    assert box.holding == 0
    assert box.fault is None
    assert [s for s, _ in _rows(tmp_path / "outbox.sqlite3")] == [1, 2, 3, 4, 5, 6, 7]
    assert box.append("t", _payload) == 8
    assert [(a.code, a.state) for a in health_alarms] == [("disk_full", "raised"), ("disk_full", "cleared")]
    assert alarms == [], "nothing was lost, so nothing is announced"
    assert health.ok()
    box.close()


def test_events_past_the_memory_bound_are_dropped_oldest_first_and_announced_by_number(tmp_path: Path) -> None:
    box, alarms, _health, _ = _box(tmp_path / "outbox.sqlite3", hold_max=5)
    box.append("t", _payload)
    with state_faults.inject("full"):
        for _ in range(8):
            box.append("t", _payload)  # seqs 2..9: 2, 3, 4 are pushed out of memory
        assert box.holding == 5
        assert box.dropped_total == 3
    box.prune()
    assert [s for s, _ in _rows(tmp_path / "outbox.sqlite3")] == [1, 5, 6, 7, 8, 9]
    dropped = [a.body() for a in alarms if a.code == "outbox_dropped"]
    assert dropped == [
        {
            "code": "outbox_dropped",
            "severity": "critical",
            "component": "outbox",
            "count": 3,
            "first_seq": 2,
            "last_seq": 4,
        }
    ]
    box.close()


def test_acknowledged_held_events_are_never_written_and_their_numbers_never_reused(tmp_path: Path) -> None:
    box, _alarms, _health, _ = _box(tmp_path / "outbox.sqlite3")
    with state_faults.inject("full"):
        box.append("t", _payload)
        box.append("t", _payload)
        sent = box.pending()
        box.remove([e.id for e in sent])  # the broker acknowledged both while the disk was full
        assert box.depth() == 0
    box.prune()
    assert _rows(tmp_path / "outbox.sqlite3") == []
    assert box.last_seq() == 2, "the numbering moved past the events acknowledged from memory"
    assert box.append("t", _payload) == 3
    box.close()


def test_a_run_that_dies_while_holding_announces_the_lost_range_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box, _alarms, _health, _ = _box(path)
    box.append("t", _payload)
    state_faults.arm("full", "outbox.sqlite3")
    for _ in range(3):
        box.append("t", _payload)  # 2..4 held; their numbers are in outbox.seq
    box.close()  # the disk is still full: the held events die with this run (as with SIGKILL)
    state_faults.disarm()
    again, alarms, _h, _ = _box(path)
    assert [(a.code, a.first_seq, a.last_seq, a.count) for a in alarms] == [("outbox_dropped", 2, 4, 3)]
    assert again.append("t", _payload) == 5, "a number handed out before is never used again"
    assert [s for s, _ in _rows(path)] == [1, 5]
    again.close()


def test_a_read_only_state_dir_holds_events_unpublished_until_writes_work(tmp_path: Path) -> None:
    box, _alarms, _health, health_alarms = _box(tmp_path / "outbox.sqlite3")
    box.append("t", _payload)
    with state_faults.inject("read_only"):
        box.append("t", _payload)
        box.append("t", _payload)
        assert box.holding == 2
        # outbox.seq cannot record the numbers either: publishing them now could reuse them after a crash
        assert [e.seq for e in box.pending()] == [1]
    assert [(a.code, a.state) for a in health_alarms] == [("disk_read_only", "raised")]
    box.prune()
    assert [e.seq for e in box.pending()] == [1, 2, 3]
    box.close()


def test_sqlites_own_full_error_is_handled_like_an_injected_one(tmp_path: Path) -> None:
    """``PRAGMA max_page_count`` caps the database: SQLite itself answers SQLITE_FULL."""
    box, _alarms, _health, health_alarms = _box(tmp_path / "outbox.sqlite3")
    box.append("t", _payload)
    pages = int(box._db.execute("PRAGMA page_count").fetchone()[0])
    box._db.execute(f"PRAGMA max_page_count = {pages}")
    seqs = [box.append("t", lambda seq: bytes(2000)) for _ in range(20)]
    assert seqs == list(range(2, 22))
    assert box.holding > 0
    assert box.fault == "full"
    box._db.execute("PRAGMA max_page_count = 1073741823")
    box.prune()
    assert box.holding == 0
    assert [s for s, _ in _rows(tmp_path / "outbox.sqlite3")] == list(range(1, 22))
    assert [a.code for a in health_alarms] == ["disk_full", "disk_full"]
    box.close()


def test_a_real_full_file_system(tmp_path: Path) -> None:
    """A 512 KB tmpfs filled to ENOSPC by another file, then given room again. (A mounted file
    system with open files cannot be remounted read-only; the read-only start is tested with the
    agent's safe mode.)"""
    try:
        with tiny_fs(tmp_path / "fs", size_kb=512) as fs:
            path = fs.root / "outbox.sqlite3"
            box, alarms, _health, health_alarms = _box(path)
            box.append("t", _payload)
            fs.fill()  # the file system is full now (ENOSPC)
            for _ in range(30):
                box.append("t", lambda seq: bytes(3000))
            assert box.fault == "full"
            assert box.holding > 0
            assert [e.seq for e in box.pending(limit=100)] == list(range(1, 32)), "outbox.seq still takes the mark"
            fs.free()
            box.prune()
            assert box.holding == 0
            assert box.fault is None
            assert [s for s, _ in _rows(path)] == list(range(1, 32))
            assert [(a.code, a.state) for a in health_alarms] == [("disk_full", "raised"), ("disk_full", "cleared")]
            assert alarms == []
            box.close()
    except TinyFsUnavailable as exc:
        pytest.skip(str(exc))


def _scribble_page(path: Path, table: str) -> None:
    """Write random-looking bytes over the first page of ``table`` in a closed database file."""
    db = sqlite3.connect(path)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    start = (int(root) - 1) * int(size)
    data[start : start + int(size)] = bytes((i * 151 + 7) % 256 for i in range(int(size)))
    path.write_bytes(bytes(data))


def test_a_damaged_outbox_is_set_aside_its_readable_rows_queued_again_and_numbering_continues(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    for _ in range(5):
        box.append("t", _payload)
    box.close()
    _scribble_page(path, "meta")  # the page holding the sequence number; the queued rows survive
    with pytest.raises(StoreDamaged) as err:
        Outbox(path)
    assert "outbox" in str(err.value)
    assert "malformed" in str(err.value)
    fresh = Outbox.open_or_replace(path)
    (aside,) = set_aside_files(tmp_path)
    assert aside.store == "outbox"
    assert aside.aside.startswith("outbox.sqlite3.damaged-")
    assert aside.salvaged == 5
    assert (tmp_path / aside.aside).exists(), "the damaged file is kept"
    assert [(e.seq, e.payload) for e in fresh.pending()] == [(i, f"event-{i}".encode()) for i in range(1, 6)]
    seq = fresh.append("t", _payload)
    assert seq > 5
    assert (aside.first_lost_seq, aside.last_lost_seq) == (6, seq - 1)
    fresh.close()


def test_a_damaged_page_of_queued_events_loses_only_that_store(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    for _ in range(5):
        box.append("t", _payload)
    box.close()
    _scribble_page(path, "outbox")
    fresh = Outbox.open_or_replace(path)
    (aside,) = set_aside_files(tmp_path)
    assert aside.salvaged == 0
    assert fresh.pending() == []
    assert fresh.append("t", _payload) > 5
    fresh.close()


def test_a_header_that_is_not_a_database_starts_a_fresh_outbox_above_the_reserved_numbers(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    for _ in range(3):
        box.append("t", _payload)
    box.close()
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreDamaged, match="file is not a database"):
        Outbox(path)
    fresh = Outbox.open_or_replace(path)
    seq = fresh.append("t", _payload)
    (aside,) = set_aside_files(tmp_path)
    assert aside.salvaged == 0
    # nothing of the old file is readable: every number it may have used is named as possibly lost
    assert (aside.first_lost_seq, aside.last_lost_seq) == (1, seq - 1)
    assert 3 < seq <= 1001, "above everything the old file may have used, within one reserved block"
    fresh.close()


def test_rows_after_a_fault_come_after_every_id_handed_to_a_held_event(tmp_path: Path) -> None:
    """The publisher's cursor passed the ids of held events acknowledged from memory; a row
    written after the fault must get a later id, or the publisher would never send it."""
    box, _alarms, _health, _ = _box(tmp_path / "outbox.sqlite3")
    box.append("t", _payload)
    with state_faults.inject("full"):
        box.append("t", _payload)
        box.append("t", _payload)
        sent = box.pending()
        box.remove([e.id for e in sent])  # all three acknowledged (two from memory)
        cursor = sent[-1].id
    box.prune()
    box.append("t", _payload)
    assert [e.seq for e in box.pending(after_id=cursor)] == [4]
    box.close()
