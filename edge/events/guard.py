"""The egress guard: the last check before anything is signed and queued for the broker.

Every body must match its kind's schema (``edge.events.schema``): unknown fields, byte strings,
nested maps, lists of numbers and long free-form strings are refused, so nothing that could carry an
image, an embedding or a sensor template leaves the device. A refusal is written to the audit log
(kind, field and rule only; never the refused value) and raised as ``EgressRefused``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import NewType, Protocol

from edge.errors import EdgeError
from edge.events.schema import SchemaViolation, validate

log = logging.getLogger(__name__)


#: A body that passed ``check``: the signer takes one without checking it again.
CheckedBody = NewType("CheckedBody", dict[str, object])


class AuditLog(Protocol):
    """What the guard needs from the audit log (``edge.audit`` provides it)."""

    def append(self, kind: str, details: Mapping[str, object]) -> object: ...


class EgressRefused(EdgeError):  # noqa: N818 - the name other modules import
    """An event body was refused by the egress guard. The refused value is never kept or printed."""

    hint = "only fields of the event schema in docs/events.md may be published"

    def __init__(self, kind: str, field: str, rule: str) -> None:
        self.kind = kind
        self.field = field
        self.rule = rule
        super().__init__(f"egress refused: event {kind!r} field {field!r}: {rule}")


def check(kind: str, body: Mapping[str, object], *, audit: AuditLog | None = None) -> CheckedBody:
    """Return the clean body if it may leave the device; otherwise audit and raise ``EgressRefused``."""
    try:
        clean = validate(kind, body)
    except SchemaViolation as exc:
        log.warning("egress guard refused an event of kind %s: field %s: %s", exc.kind, exc.field, exc.rule)
        if audit is not None:
            audit.append("egress_refused", {"event_kind": exc.kind[:48], "field": exc.field[:64], "rule": exc.rule})
        raise EgressRefused(exc.kind, exc.field, exc.rule) from None
    return CheckedBody(clean)


class Guard:
    """``check`` bound to an audit log, for wiring into a sink."""

    def __init__(self, audit: AuditLog | None = None) -> None:
        self.audit = audit

    def check(self, kind: str, body: Mapping[str, object]) -> dict[str, object]:
        return check(kind, body, audit=self.audit)
