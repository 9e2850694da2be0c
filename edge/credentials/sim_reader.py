"""``SimCredentialReader``: fed programmatically (``feed``) or through a control FIFO where each line
is ``kind:value`` (``echo card:0004123456 > /run/gate-edge/credentials``). No threads: ``read``
waits on the FIFO and a self-pipe with ``select``.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from edge.credentials.base import Credential
from edge.credentials.plumbing import ControlFifo, WakePipe


class SimCredentialReader:
    """A simulated reader: ``feed`` from code, or lines written to a control FIFO."""

    def __init__(self, control: Path | None = None) -> None:
        self._queue: deque[Credential] = deque()
        self._wake = WakePipe()
        self.control = control
        self._fifo = ControlFifo(control) if control is not None else None

    def feed(self, credential: Credential) -> None:
        self._queue.append(credential)
        self._wake.wake()

    def read(self, timeout_s: float) -> Credential | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._fifo is not None:
                self._queue.extend(self._fifo.credentials())
            if self._queue:
                return self._queue.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._wake.wait([self._fifo.fd] if self._fifo is not None else [], remaining)

    def close(self) -> None:
        if self._fifo is not None:
            self._fifo.close()
            self._fifo = None
        self._wake.close()

    def __enter__(self) -> SimCredentialReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
