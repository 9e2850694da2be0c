"""File-descriptor plumbing the simulated readers share: a self-pipe to wake a ``select`` and the
control FIFO (``kind:value`` lines).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
from pathlib import Path

from edge.credentials.base import Credential, parse_control_line
from edge.errors import HardwareError

MAX_LINE = 600


def _close_fds(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


class WakePipe:
    """A self-pipe: ``wake`` from any thread ends a ``wait`` early."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._w, b"x")

    def wait(self, fds: list[int], timeout_s: float) -> None:
        """Until ``timeout_s`` passes, one of ``fds`` is readable, or ``wake`` is called."""
        ready, _, _ = select.select([self._r, *fds], [], [], max(0.0, timeout_s))
        if self._r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._r, 4096)

    def close(self) -> None:
        _close_fds(self._r, self._w)
        self._r = self._w = -1


class ControlFifo:
    """A simulator's control FIFO of ``kind:value`` lines (created 0600 if missing)."""

    def __init__(self, path: Path) -> None:
        if path.exists() and not stat.S_ISFIFO(path.stat().st_mode):
            raise HardwareError(f"{path} exists and is not a FIFO", hint="remove it or choose another path")
        if not path.exists():
            os.mkfifo(path, 0o600)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # hold a writer open ourselves so the FIFO never reads as end-of-file between writers
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buffer = b""

    def credentials(self) -> list[Credential]:
        """The well-formed lines written since the last call (malformed ones are logged)."""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        parsed = (parse_control_line(raw.decode("utf-8", "replace")) for raw in lines)
        return [c for c in parsed if c is not None]

    def close(self) -> None:
        _close_fds(self.fd, self._keep)
        self.fd = self._keep = -1
