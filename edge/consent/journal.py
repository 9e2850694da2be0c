"""Pending deletions: a deletion, its audit record and its signed receipt are one unit of work.

The enforcer writes an entry here (durably) *before* it deletes anything of a subject, fills in
what each store deleted as it goes, marks the audit record written, and removes the entry only
once the receipt is committed to the outbox. A full disk, a read-only state directory or a crash
at any step leaves the entry, and ``Enforcer.tick`` drives it on (``redrive``) until it is done:
a template is never deleted without its receipt following, and a receipt is never signed for a
template that was not deleted. If the entry itself cannot be written, nothing is deleted yet (the
person's consent has already ended, so the template is not used meanwhile) and the deletion is
tried again at the next tick.

The file (``<state>/deletions.json``, replaced atomically) holds subject ids, store names, counts,
slot numbers and reason codes; never template bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge.errors import StorageError
from edge.state import atomic_write
from edge.state_faults import storage_error

log = logging.getLogger(__name__)

FILE_VERSION = 1


@dataclass
class PendingDeletion:
    """One subject's deletion on its way to a receipt."""

    subject: str
    reason: str  # the enforcer's precise cause (withdrawn, expired, not-in-list, ...)
    list_version: int | None
    at: float
    #: store names still to delete from (immediate stores; a deferred store's part comes done)
    stores_left: list[str] = field(default_factory=list)
    #: what each store deleted: [store name, modality or None, its report]
    parts: list[tuple[str, str | None, dict[str, object]]] = field(default_factory=list)
    #: the audit log's head when the unit began (a record written after it is recognised, not repeated)
    audit_floor: int = 0
    audited: bool = False

    @property
    def key(self) -> str:
        return f"{self.subject}|{self.reason}|{self.list_version}|{self.at!r}"


class DeletionJournal:
    """Thread-safe (the enforcer holds its own lock too); ``path`` None keeps it in memory (tests)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, PendingDeletion] = {}
        #: where an unreadable journal was moved (None: it was readable)
        self.set_aside: Path | None = None
        if path is not None and path.exists():
            try:
                loaded = _load(path)
            except StorageError as exc:  # not a reason to stop the door: kept aside, the start-up
                # reconcile deletes again what consent no longer allows (with new receipts)
                self.set_aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
                log.error("%s; moved aside to %s", exc.one_line(), self.set_aside.name)
                try:
                    path.replace(self.set_aside)
                except OSError:
                    self.set_aside = None
                loaded = []
            for entry in loaded:
                self._entries[entry.key] = entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def entries(self) -> list[PendingDeletion]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: (e.at, e.subject))

    def begin(self, entry: PendingDeletion) -> None:
        """Record the unit before anything is deleted; raises ``StorageError`` when the disk refuses
        (then nothing may be deleted yet)."""
        with self._lock:
            if entry.key in self._entries:
                return
            self._entries[entry.key] = entry
            try:
                self._save()
            except StorageError:
                del self._entries[entry.key]
                raise

    def save(self) -> bool:
        """Persist progress; False when the disk refuses (the progress is kept in memory)."""
        with self._lock:
            try:
                self._save()
            except StorageError as exc:
                log.warning("deletion journal not saved (%s); progress kept in memory", exc.one_line())
                return False
            return True

    def done(self, entry: PendingDeletion) -> None:
        with self._lock:
            self._entries.pop(entry.key, None)
            try:
                self._save()
            except StorageError as exc:  # the receipt is out; a re-drive after a restart repeats it at most
                log.warning("deletion journal not saved after a receipt (%s)", exc.one_line())

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": FILE_VERSION, "pending": [asdict(e) for e in self._entries.values()]}
        try:
            atomic_write(self.path, json.dumps(data, sort_keys=True).encode(), 0o600)
        except OSError as exc:
            raise storage_error(self.path, "deletion journal", exc) from None


def _load(path: Path) -> list[PendingDeletion]:
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            raise ValueError("unknown version")
        out: list[PendingDeletion] = []
        for raw in data["pending"]:
            parts = [(str(p[0]), None if p[1] is None else str(p[1]), _report(p[2])) for p in raw.get("parts", [])]
            out.append(
                PendingDeletion(
                    subject=str(raw["subject"]),
                    reason=str(raw["reason"]),
                    list_version=None if raw.get("list_version") is None else int(raw["list_version"]),
                    at=float(raw["at"]),
                    stores_left=[str(s) for s in raw.get("stores_left", [])],
                    parts=parts,
                    audit_floor=int(raw.get("audit_floor", 0)),
                    audited=bool(raw.get("audited", False)),
                )
            )
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise StorageError(
            f"the deletion journal {path} is unreadable ({exc.__class__.__name__})",
            hint="deletions may be without their receipts: keep the file for the vendor, then remove it; "
            "the enforcer deletes again what consent no longer allows at the next start",
        ) from None
    return out


def _report(value: object) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise TypeError("a deletion part is not a map")
    return {str(k): v for k, v in value.items()}
