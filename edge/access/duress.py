"""Duress fingers: sensor slots whose match means "I am being forced" (issue 15).

A person enrols one extra finger with ``edge-provision enrol --modality fingerprint --duress``. At
the gate that finger opens the door exactly like any other (the attacker standing behind sees
nothing different: same LED, same event shape at the door) and the agent sends the site a
``duress`` alarm event, which is never indicated on the terminal itself.

Kept in ``duress.json`` in the state directory (0600): sensor slot numbers only, never a template,
never a subject. Every finger enrolment sets or clears its slot's flag, so a slot reused after a
deletion never inherits an old flag.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from edge.errors import StorageError
from edge.state import fsync_dir


class DuressSlots:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._slots = self._read()

    def _read(self) -> set[int]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise StorageError(
                f"{self.path} is unreadable ({exc.__class__.__name__})",
                hint="re-enrol the duress fingers, then remove the file",
            ) from None
        if not isinstance(raw, dict) or not isinstance(raw.get("slots"), list):
            raise StorageError(f"{self.path} is not a duress slot list", hint="re-enrol the duress fingers")
        return {int(s) for s in raw["slots"] if isinstance(s, int) and 0 <= s < 65536}

    def __contains__(self, slot: object) -> bool:
        with self._lock:
            return slot in self._slots

    def mark(self, slot: int, duress: bool) -> None:
        """Set (or clear) ``slot``'s flag, durably (write to a temporary file, fsync, rename)."""
        with self._lock:
            slots = set(self._slots)
            if duress:
                slots.add(slot)
            else:
                slots.discard(slot)
            if slots == self._slots and (self.path.exists() or not slots):
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps({"slots": sorted(slots)}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
            fsync_dir(self.path.parent)
            self._slots = slots
