"""Signed events: the only thing that leaves the terminal.

- ``schema``: the event kinds and their fields (docs/events.md)
- ``guard``: the egress guard, refusing anything outside the schema
- ``envelope``: the COSE_Sign1 envelope and its payload claims
- ``sink``: the ``EventSink`` protocol; ``OutboxSink`` is the production sink
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.events.outbox_sink import OutboxSink

__all__ = ["OutboxSink"]


def __getattr__(name: str) -> Any:
    if name == "OutboxSink":
        from edge.events.outbox_sink import OutboxSink

        return OutboxSink
    raise AttributeError(name)
