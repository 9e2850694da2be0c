"""Damaged stores: moved aside with a time stamp, a fresh one started, reported once.

When a store's SQLite file cannot be opened or read (``StoreDamaged``: not a database, a damaged
header or page), the agent does not exit (systemd would restart it into the same failure every
2 s, and nobody would pass, not even by card). The store's own ``open_or_replace`` moves the file
and its ``-wal``/``-shm`` aside as ``<name>.damaged-<UTC time>``, reads back what it still can
(the salvage: outbox rows, audit records, the last consent list, sealed gallery rows), starts a
fresh file with it, and writes a small note beside the damaged file (``<aside>.json``: store,
SQLite's reason, rows salvaged, whether a fresh one was started).

The note is the durable record of the event: ``report_set_aside`` (called once the audit log and
the event sink are up) appends one ``store_replaced`` audit record and emits one ``store_replaced``
alarm per note not yet reported, then stores the audit record's number in the note, so a restart
does not report it again. The damaged file is never deleted by the agent: it is kept for the
vendor (``edge status`` and ``edge-provision selftest`` list it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edge.errors import StorageError
from edge.events.kinds import Alarm
from edge.state import atomic_write, fsync_dir

log = logging.getLogger(__name__)

STORES = ("outbox", "audit", "consent", "gallery")
MARK = ".damaged-"
SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class SetAside:
    """One damaged store file moved aside (the note beside it)."""

    store: str  # outbox | audit | consent | gallery
    name: str  # the live file's name (``outbox.sqlite3``)
    aside: str  # the damaged file's new name, in the same directory
    detail: str  # SQLite's reason ("file is not a database"); never row data
    at: float
    salvaged: int = 0  # rows read back into the fresh store
    fresh: bool = True  # a fresh store was started in its place
    first_lost_seq: int | None = None  # outbox: the event numbers that may be lost with it
    last_lost_seq: int | None = None
    audit_seq: int | None = None  # the audit record that reported it (None: not reported yet)

    def note_path(self, root: Path) -> Path:
        return root / (self.aside + ".json")


def aside_name(path: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    candidate = path.with_name(f"{path.name}{MARK}{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}{MARK}{stamp}-{n}")
    return candidate


def set_aside(path: Path, store: str, detail: str, *, now: float | None = None) -> SetAside:
    """Move ``path`` (and its -wal/-shm/-journal) aside; raise ``StorageError`` if it cannot be moved
    (a read-only state directory: then the caller fails closed instead)."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}")
    when = time.time() if now is None else now
    target = aside_name(path, when)
    try:
        for suffix in SIDECARS:
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                extra.replace(target.with_name(target.name + suffix))
        path.replace(target)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(
            f"the damaged {store} {path} cannot be moved aside ({exc.strerror})",
            hint="the state directory is read-only or full: remount it read-write, then restart the agent",
        ) from None
    log.error("the %s %s is damaged (%s): moved aside to %s", store, path.name, detail, target.name)
    return SetAside(store, path.name, target.name, detail[:200], when)


def write_note(root: Path, info: SetAside) -> None:
    """Write (or update) the note beside the damaged file; a full disk only logs (the damaged file
    itself still shows in ``edge status``)."""
    try:
        atomic_write(info.note_path(root), json.dumps(asdict(info), sort_keys=True).encode(), 0o600)
    except OSError as exc:
        log.error("could not write the note for %s (%s)", info.aside, exc.strerror)


def _note(path: Path) -> SetAside | None:
    try:
        raw = json.loads(path.read_bytes())
        return SetAside(**{k: raw[k] for k in SetAside.__dataclass_fields__ if k in raw})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def set_aside_files(root: Path) -> list[SetAside]:
    """Every damaged store file in ``root``, with its note (a file without a note is listed too)."""
    found: list[SetAside] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        name = path.name
        if MARK not in name or name.endswith(".json") or name.endswith(SIDECARS) or name.startswith("."):
            continue
        note = _note(path.with_name(name + ".json"))
        if note is None:  # a state file set aside without a note (the deletion journal), or by hand
            live = name.split(MARK)[0]
            store = next((s for s in STORES if live.startswith(s)), live)
            note = SetAside(store, live, name, "unreadable", path.stat().st_mtime, fresh=False)
        found.append(note)
    return found


def report_set_aside(root: Path, audit: Callable[[str, dict[str, object]], int], emit: Callable[[Alarm], None]) -> int:
    """Audit and alarm every damaged store not reported yet; returns how many were reported."""
    count = 0
    for info in set_aside_files(root):
        if info.audit_seq is not None or info.store not in STORES or not info.note_path(root).exists():
            continue  # reported already, or not a store this module set aside (listed by edge status)
        details: dict[str, object] = {"store": info.store, "aside": info.aside, "fresh": info.fresh}
        if info.detail:
            details["detail"] = "".join(c if " " <= c <= "~" else "?" for c in info.detail)[:200]
        if info.salvaged:
            details["salvaged"] = info.salvaged
        seq = audit("store_replaced", details)
        emit(
            Alarm(
                "store_replaced",
                "critical",
                component=info.store,
                count=info.salvaged,
                first_seq=info.first_lost_seq,
                last_seq=info.last_lost_seq,
            )
        )
        write_note(root, replace(info, audit_seq=seq))
        count += 1
    return count
