"""Where components hand events to be signed and published.

Components (consent, gallery, the gate loop) never sign or publish themselves: they build a typed
event (``edge.events.kinds``) and call ``EventSink.emit(event)``. The agent wires the sink to the
egress guard, the signer and the durable outbox (``OutboxSink``); tests use ``MemorySink``.
"""

from __future__ import annotations

import threading
from typing import Protocol

from edge.events.kinds import AnyEvent


class EventSink(Protocol):
    def emit(self, event: AnyEvent) -> None:
        """Queue one event (an ``Access``, a ``DeletionReceipt``, ...) to be guarded, signed and published."""


class MemorySink:
    """Keeps emitted events in memory, for tests and dry runs: ``typed`` as emitted, ``events`` as
    ``(kind, published body)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.typed: list[AnyEvent] = []
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: AnyEvent) -> None:
        with self._lock:
            self.typed.append(event)
            self.events.append((event.kind, event.body()))

    def of_kind(self, kind: str) -> list[dict[str, object]]:
        """The published bodies of every event of ``kind``, in order."""
        with self._lock:
            return [body for k, body in self.events if k == kind]
