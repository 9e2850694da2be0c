"""Storage faults: what a failed write means, and a switch that makes writes fail on purpose.

Every store calls ``check_write(path)`` before it starts a SQLite write transaction and every
small state file ``check_file_write(path)`` before it writes (``edge.state.atomic_write``). In
production nothing is armed and each call is one attribute test. Tests and the fault soak arm
it to reproduce a full disk or a read-only state directory at exactly that boundary:

* in the same process: ``with inject("full", "outbox.sqlite3"): ...`` (or ``"*"`` for every store);
* in an agent started as a child process: ``$EDGE_FAULTS_FILE`` names a JSON file
  ``{"full": ["*"], "read_only": []}`` that the agent re-reads when it changes (the soak writes it).

The raised errors are the ones the real fault gives: ``sqlite3.OperationalError`` with
``sqlite_errorname`` ``SQLITE_FULL`` or ``SQLITE_READONLY`` (what SQLite reports on ENOSPC and
EROFS), ``OSError`` with ``errno`` ``ENOSPC`` or ``EROFS`` for plain files. ``classify`` maps
either kind, injected or real, to ``full``, ``read_only``, ``io`` or ``damaged``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from edge.errors import StorageError, StorageUnavailable, StoreDamaged

FAULTS = ("full", "read_only")

_SQLITE = {
    "full": (13, "SQLITE_FULL", "database or disk is full"),
    "read_only": (8, "SQLITE_READONLY", "attempt to write a readonly database"),
}
_ERRNO = {"full": errno.ENOSPC, "read_only": errno.EROFS}


def classify(exc: BaseException) -> str | None:
    """``full``, ``read_only``, ``io`` or ``damaged`` for a storage failure; None for anything else."""
    if isinstance(exc, StorageUnavailable):
        return exc.cause
    if isinstance(exc, StoreDamaged):
        return "damaged"
    if isinstance(exc, sqlite3.Error):
        name = str(getattr(exc, "sqlite_errorname", "") or "")
        if name == "SQLITE_FULL":
            return "full"
        if name.startswith("SQLITE_READONLY") or name in ("SQLITE_PERM", "SQLITE_AUTH"):
            return "read_only"
        if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or name == "SQLITE_BUSY":
            return "io"
        if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
            return "damaged"
        text = str(exc).lower()
        if "disk is full" in text:
            return "full"
        if "readonly" in text or "read-only" in text:
            return "read_only"
        if "not a database" in text or "malformed" in text:
            return "damaged"
        if "disk i/o" in text or "unable to open" in text:
            return "io"
        return None
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "read_only"
        if exc.errno == errno.EIO:
            return "io"
    return None


def storage_error(path: Path, what: str, exc: BaseException) -> StorageError:
    """The installer-worded error for a failed write or read of a store."""
    kind = classify(exc)
    if kind == "damaged":
        return StoreDamaged(path, what, exc)
    if kind is not None:
        return StorageUnavailable(path, what, kind)
    return StorageError(f"cannot write the {what} {path} ({exc.__class__.__name__}: {exc})")


# ----------------------------------------------------------------------------- injection


class _Injector:
    """What is armed: fault -> file names (``*``: every store). Guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, set[str]] = {}
        self._file: Path | None = None
        self._file_stamp: float | None = None
        self._file_checked = 0.0
        self._file_armed: dict[str, set[str]] = {}
        self.raised = 0

    def arm(self, fault: str, names: set[str]) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown storage fault {fault!r}; expected one of {', '.join(FAULTS)}")
        with self._lock:
            self._armed.setdefault(fault, set()).update(names)

    def disarm(self, fault: str | None = None, names: set[str] | None = None) -> None:
        with self._lock:
            for key in list(self._armed) if fault is None else [fault]:
                if names is None:
                    self._armed.pop(key, None)
                else:
                    self._armed.get(key, set()).difference_update(names)

    def watch(self, path: Path | None) -> None:
        with self._lock:
            self._file, self._file_stamp, self._file_armed = path, None, {}

    def _from_file(self) -> dict[str, set[str]]:
        path = self._file
        if path is None:
            return {}
        now = time.monotonic()
        if now - self._file_checked < 0.05:
            return self._file_armed
        self._file_checked = now
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            self._file_armed, self._file_stamp = {}, None
            return {}
        if stamp != self._file_stamp:
            self._file_stamp = stamp
            try:
                doc = json.loads(path.read_text())
                self._file_armed = {f: set(doc.get(f, [])) for f in FAULTS if isinstance(doc, dict)}
            except (OSError, ValueError):
                self._file_armed = {}
        return self._file_armed

    def fault_for(self, path: Path) -> str | None:
        if not self._armed and self._file is None:
            return None
        with self._lock:
            file_armed = self._from_file()
            for fault in FAULTS:
                names = self._armed.get(fault, set()) | file_armed.get(fault, set())
                if "*" in names or path.name in names:
                    self.raised += 1
                    return fault
        return None


_INJECTOR = _Injector()
if os.environ.get("EDGE_FAULTS_FILE"):
    _INJECTOR.watch(Path(os.environ["EDGE_FAULTS_FILE"]))


def check_write(path: Path) -> None:
    """Raise the SQLite error of an armed fault for the store at ``path`` (called before each write)."""
    fault = _INJECTOR.fault_for(path)
    if fault is not None:
        code, name, text = _SQLITE[fault]
        exc = sqlite3.OperationalError(text)
        vars(exc).update(sqlite_errorcode=code, sqlite_errorname=name)  # as SQLite itself sets them
        raise exc


def check_file_write(path: Path) -> None:
    """Raise the ``OSError`` of an armed fault for the state file at ``path``."""
    fault = _INJECTOR.fault_for(path)
    if fault is not None:
        code = _ERRNO[fault]
        raise OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def inject(fault: str, *names: str) -> Iterator[None]:
    """Make writes to the named state files (``outbox.sqlite3``, ``*`` for all) fail with ``fault``."""
    armed = set(names) or {"*"}
    _INJECTOR.arm(fault, armed)
    try:
        yield
    finally:
        _INJECTOR.disarm(fault, armed)


def arm(fault: str, *names: str) -> None:
    _INJECTOR.arm(fault, set(names) or {"*"})


def disarm(fault: str | None = None) -> None:
    _INJECTOR.disarm(fault)


def write_fault_file(path: Path, **faults: list[str]) -> None:
    """Write the JSON an agent started with ``$EDGE_FAULTS_FILE=path`` obeys (the soak's switch)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({f: list(faults.get(f, [])) for f in FAULTS}))
    tmp.replace(path)


def check_inplace_write(path: Path) -> None:
    """Like ``check_file_write`` for an overwrite of bytes a file already has: a full disk still
    takes it (no new blocks), a read-only one does not."""
    fault = _INJECTOR.fault_for(path)
    if fault == "read_only":
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
