"""Whether the state directory takes writes: one alarm for a full or read-only disk, not one per store.

Every store reports each failed write (``failed(store, cause)``, cause ``full``, ``read_only`` or
``io``: ``edge.state_faults.classify``) and each write that works again (``succeeded(store)``).
The first failure raises one alarm (``disk_full``, ``disk_read_only`` or ``disk_failed``,
component the store that hit it first); when no store is failing any more the same alarm is
cleared. A store that has no write of its own to retry is probed by ``tick()``: a 4 KB file is
written and synced in the state directory (``.write-probe``); when that works the store counts
as recovered, and the callbacks registered with ``on_recovered`` run (the deletion journal
re-drives, the outbox writes what it holds).

One ``StorageHealth`` per agent (``edge.agent`` wires its ``on_alarm`` to the event sink); the
module-level ``HEALTH`` is the default the stores use. Its alarm is an event like any other: while
the outbox holds events in memory, it is held there too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.events.kinds import Alarm
from edge.state_faults import check_file_write

log = logging.getLogger(__name__)

ALARMS = {"full": "disk_full", "read_only": "disk_read_only", "io": "disk_failed"}
PROBE_NAME = ".write-probe"


class StorageHealth:
    def __init__(self, *, probe_every_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}  # store -> cause
        self._raised: tuple[str, str] | None = None  # (alarm code, component) while raised
        self._root: Path | None = None
        self._next_probe = 0.0
        self.probe_every_s = probe_every_s
        self.clock = clock
        self.on_alarm: Callable[[Alarm], None] | None = None
        self._recovered: list[Callable[[], None]] = []
        self.episodes = 0  # faults raised since start (the soak counts them)

    def watch(self, root: Path) -> None:
        """Probe writes in ``root`` (the state directory) when a store has nothing of its own to retry."""
        with self._lock:
            self._root = root

    def on_recovered(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._recovered.append(callback)

    @property
    def failing(self) -> dict[str, str]:
        with self._lock:
            return dict(self._failing)

    def ok(self) -> bool:
        with self._lock:
            return not self._failing

    def failed(self, store: str, cause: str) -> None:
        with self._lock:
            first = store not in self._failing
            self._failing[store] = cause
            alarm: Alarm | None = None
            if self._raised is None:
                code = ALARMS.get(cause, "disk_failed")
                self._raised = (code, store)
                self.episodes += 1
                alarm = Alarm(code, "critical", "raised", store)
        if first:
            log.error("the %s store cannot be written (%s); the gate keeps deciding by what it holds", store, cause)
        self._emit(alarm)

    def succeeded(self, store: str) -> None:
        if store not in self._failing:  # the common case: no lock, no work
            return
        self._clear([store])

    def _clear(self, stores: list[str]) -> None:
        with self._lock:
            for store in stores:
                self._failing.pop(store, None)
            alarm: Alarm | None = None
            callbacks: list[Callable[[], None]] = []
            if not self._failing and self._raised is not None:
                code, component = self._raised
                self._raised = None
                alarm = Alarm(code, "info", "cleared", component)
                callbacks = list(self._recovered)
        if alarm is not None:
            log.info("the state directory takes writes again")
        self._emit(alarm)
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                log.error("a storage recovery step failed (%s); retried later", exc.__class__.__name__)

    def tick(self) -> None:
        """Probe the state directory while something is failing (rate-limited)."""
        if not self._failing:
            return
        now = self.clock()
        with self._lock:
            if now < self._next_probe or self._root is None:
                return
            self._next_probe = now + self.probe_every_s
            root = self._root
        if probe(root):
            self._clear(list(self._failing))

    def _emit(self, alarm: Alarm | None) -> None:
        if alarm is None or self.on_alarm is None:
            return
        try:
            self.on_alarm(alarm)
        except Exception as exc:  # the alarm is lost, the state is kept: logged, never raised into a store
            log.error("the storage alarm could not be queued (%s)", exc.__class__.__name__)

    def reset(self) -> None:
        """Forget every fault and callback (tests; a new agent in the same process)."""
        with self._lock:
            self._failing.clear()
            self._raised = None
            self._recovered.clear()
            self.on_alarm = None
            self._root = None


def probe(root: Path, size: int = 4096) -> bool:
    """Whether ``root`` takes a new file of ``size`` bytes, synced (then removed)."""
    path = root / PROBE_NAME
    try:
        check_file_write(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
    except OSError:
        return False
    return True


#: The agent's storage health; stores report to it unless given another.
HEALTH = StorageHealth()
