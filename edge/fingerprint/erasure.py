"""Sensor slots waiting to be erased, kept in a small state file so a restart cannot lose one.

A withdrawal deletes a subject's gallery record at once, but the template itself lives in the
sensor's flash and only the thread owning the UART may erase it; the sensor may also be unplugged.
So the slot is queued here first (the file is replaced atomically), the gallery record goes next,
and the receipt is signed only when the erase has happened (``on_erased``). A crash between the
two leaves the slot queued (erased at the next start) or the record in place (reconciled again).

Orphans found on the sensor (templates no gallery record refers to) are queued without a subject:
they are erased like the others but produce no receipt, since nobody's consent is involved.

The file holds slot numbers, pseudonymous subject ids and reason codes; never template bytes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.errors import StorageError
from edge.state import atomic_write

log = logging.getLogger(__name__)

FILE_VERSION = 1


@dataclass(frozen=True)
class PendingErase:
    """One slot to erase; ``subject`` None for an orphan (no receipt is owed for it)."""

    slot: int
    subject: str | None = None
    reason: str = "withdrawn"  # the receipt's reason code
    list_version: int = 0  # the consent list version that required the deletion


class EraseQueue:
    """Thread-safe; persisted to ``path`` after every change when a path is given (tests may omit it)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: dict[int, PendingErase] = {}
        self.erased = 0
        if path is not None and path.exists():
            self._pending = {p.slot: p for p in _load(path)}

    def add(self, items: Iterable[PendingErase]) -> None:
        """Queue slots (persisted before this returns). A slot already queued keeps its subject."""
        with self._lock:
            changed = False
            for item in items:
                current = self._pending.get(item.slot)
                if current is None or (current.subject is None and item.subject is not None):
                    self._pending[item.slot] = item
                    changed = True
            if changed:
                self._save()

    def pending(self) -> list[PendingErase]:
        with self._lock:
            return [self._pending[s] for s in sorted(self._pending)]

    def slots(self) -> list[int]:
        return [p.slot for p in self.pending()]

    def drain(self, erase: Callable[[int], None], erased: Callable[[list[PendingErase]], None]) -> int:
        """Erase every queued slot with ``erase``, hand what went to ``erased`` (receipts), then
        take those slots off the queue.

        A failing ``erase`` stops the drain and propagates; what was erased before it is still
        handed to ``erased`` first, and what was not stays queued. A failing ``erased`` (its
        receipts cannot be journaled: a full disk) leaves every slot queued: erasing an erased
        slot again is harmless, and the receipts are tried again with it (issue 16).
        """
        done: list[PendingErase] = []
        try:
            for item in self.pending():
                erase(item.slot)
                done.append(item)
        finally:
            if done:
                erased(done)
                self.erased += len(done)
                with self._lock:
                    for item in done:
                        self._pending.pop(item.slot, None)
                    try:
                        self._save()
                    except OSError as exc:  # receipted already; after a restart they are erased again
                        log.warning("sensor erase queue not saved (%s)", exc.strerror)
        return len(done)

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": FILE_VERSION, "pending": [asdict(p) for p in sorted(self._pending.values(), key=_slot)]}
        atomic_write(self.path, json.dumps(data, sort_keys=True).encode(), 0o600)


def _slot(item: PendingErase) -> int:
    return item.slot


def _load(path: Path) -> list[PendingErase]:
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError("unknown version")
        out: list[PendingErase] = []
        for raw in data["pending"]:
            subject = raw.get("subject")
            out.append(
                PendingErase(
                    slot=int(raw["slot"]),
                    subject=str(subject) if subject is not None else None,
                    reason=str(raw.get("reason", "withdrawn")),
                    list_version=int(raw.get("list_version", 0)),
                )
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(
            f"the sensor erase queue {path} is unreadable ({exc.__class__.__name__})",
            hint="templates may still be on the sensor: run `edge-provision reset` to empty the sensor, then remove the file",
        ) from None
    return out
