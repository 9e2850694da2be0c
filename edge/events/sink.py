"""Where components hand events to be signed and published.

Components (consent, gallery, the gate loop) never sign or publish themselves: they call
``EventSink.emit(kind, body)``. The agent wires the sink to the signer, the egress guard and the
durable outbox (``edge.events`` and ``edge.transport``); tests use ``MemorySink``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol


class EventSink(Protocol):
    def emit(self, kind: str, body: Mapping[str, object]) -> None:
        """Queue one event of ``kind`` (e.g. ``access``, ``deletion_receipt``) with a schema body."""


class MemorySink:
    """Keeps emitted events in memory, for tests and dry runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, kind: str, body: Mapping[str, object]) -> None:
        with self._lock:
            self.events.append((kind, dict(body)))

    def of_kind(self, kind: str) -> list[dict[str, object]]:
        with self._lock:
            return [body for k, body in self.events if k == kind]
