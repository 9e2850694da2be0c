"""The schema of every event body the device may publish: a pure table, no I/O.

Each event kind lists its fields; each field has a narrow type (an enum, a short token, a bounded
integer, one scalar number, a short list of enum values). Nothing in this table can hold a byte
string, a nested map, a list of numbers or a long free-form string, so no field can carry an image,
an embedding or a sensor template. ``docs/events.md`` gives the same schema in CDDL; a test checks
that the two agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

#: Pseudonymous subject ids issued by the consent authority (never names or card numbers).
PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
#: Reason and alarm codes: short snake_case tokens.
CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
#: Short identifiers (door, software version).
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")
#: A SHA-256 digest in lowercase hex (the consent list digest).
HEX256 = re.compile(r"^[0-9a-f]{64}$")

MODALITIES = ("face", "fingerprint", "card", "pin", "qr")
INT_MAX = 2**53


@dataclass(frozen=True)
class Field:
    """One field: its type name and constraints. ``nullable`` allows an explicit null."""

    type: str  # "enum" | "text" | "int" | "number" | "bool" | "enum_list"
    required: bool = True
    nullable: bool = False
    values: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    minimum: float = 0
    maximum: float = INT_MAX
    max_items: int = 8


def enum(*values: str, required: bool = True) -> Field:
    return Field("enum", required=required, values=values)


def text(pattern: re.Pattern[str], *, required: bool = True, nullable: bool = False) -> Field:
    return Field("text", required=required, nullable=nullable, pattern=pattern)


def integer(minimum: int = 0, maximum: int = INT_MAX, *, required: bool = True, nullable: bool = False) -> Field:
    return Field("int", required=required, nullable=nullable, minimum=minimum, maximum=maximum)


def number(minimum: float, maximum: float, *, required: bool = False) -> Field:
    return Field("number", required=required, minimum=minimum, maximum=maximum)


def enum_list(*values: str, required: bool = True) -> Field:
    return Field("enum_list", required=required, values=values, max_items=len(values))


EVENT_KINDS: dict[str, dict[str, Field]] = {
    # A decision at the gate: who (pseudonym, or none), how, and why.
    "access": {
        "decision": enum("granted", "denied"),
        "modality": enum(*MODALITIES, "none"),
        "subject": text(PSEUDONYM, nullable=True),
        "reason": text(CODE),
        "door": text(IDENT, required=False),
        "consent_version": integer(required=False),
        "latency_ms": integer(0, 600_000, required=False),
    },
    "enrolment": {
        "subject": text(PSEUDONYM),
        "modality": enum("face", "fingerprint"),
        "result": enum("enrolled", "refused", "failed"),
        "reason": text(CODE, required=False),
        "consent_version": integer(required=False),
    },
    # Proof that a subject's data was deleted: what, when, under which consent list version.
    "deletion_receipt": {
        "subject": text(PSEUDONYM),
        "deleted": enum_list(*MODALITIES),
        "records": integer(0, 1_000_000),
        "reason": enum("withdrawn", "expired", "not_listed", "admin"),
        "consent_version": integer(),
        "deleted_at": integer(),
    },
    "consent_applied": {
        "version": integer(),
        "entries": integer(0, 10_000_000),
        "issued_at": integer(required=False),
        "digest": text(HEX256, required=False),
    },
    "consent_rejected": {
        "version": integer(nullable=True),
        "reason": text(CODE),
    },
    "tamper": {
        "source": text(CODE),
        "state": enum("raised", "cleared"),
    },
    "alarm": {
        "code": text(CODE),
        "severity": enum("info", "warning", "critical"),
        "state": enum("raised", "cleared", required=False),
        "component": text(CODE, required=False),
        "count": integer(required=False),
        "first_seq": integer(required=False),
        "last_seq": integer(required=False),
    },
    "health": {
        "uptime_s": integer(),
        "outbox_depth": integer(),
        "outbox_oldest_s": integer(required=False),
        "modalities": enum_list(*MODALITIES, required=False),
        "consent_version": integer(required=False, nullable=True),
        "software": text(IDENT, required=False),
        "cpu_temp_c": number(-60.0, 150.0),
        "load1": number(0.0, 1000.0),
        "disk_free_mb": integer(required=False),
    },
}


class SchemaViolation(ValueError):  # noqa: N818 - reads as what it is
    """A body does not match its kind's schema. ``field`` and ``rule`` never include the value."""

    def __init__(self, kind: str, field: str, rule: str) -> None:
        self.kind = kind
        self.field = field
        self.rule = rule
        super().__init__(f"event {kind!r}: field {field!r}: {rule}")


def _type_name(value: object) -> str:
    return type(value).__name__


def check_field(kind: str, name: str, spec: Field, value: object) -> None:
    """Check one value against its field spec; raise ``SchemaViolation`` naming the rule broken."""
    if value is None:
        if spec.nullable:
            return
        raise SchemaViolation(kind, name, "null is not allowed")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise SchemaViolation(kind, name, "byte strings are never published")
    if spec.type in ("enum", "text"):
        if not isinstance(value, str):
            raise SchemaViolation(kind, name, f"expected text, found {_type_name(value)}")
        if spec.type == "enum" and value not in spec.values:
            raise SchemaViolation(kind, name, f"expected one of {', '.join(spec.values)}")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise SchemaViolation(kind, name, f"text does not match {spec.pattern.pattern}")
        return
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaViolation(kind, name, f"expected an integer, found {_type_name(value)}")
        if not spec.minimum <= value <= spec.maximum:
            raise SchemaViolation(kind, name, f"integer out of range {int(spec.minimum)}..{int(spec.maximum)}")
        return
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaViolation(kind, name, f"expected one number, found {_type_name(value)}")
        if not math.isfinite(value) or not spec.minimum <= value <= spec.maximum:
            raise SchemaViolation(kind, name, f"number out of range {spec.minimum}..{spec.maximum}")
        return
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise SchemaViolation(kind, name, f"expected true or false, found {_type_name(value)}")
        return
    if spec.type == "enum_list":
        if not isinstance(value, (list, tuple)):
            raise SchemaViolation(kind, name, f"expected a list of names, found {_type_name(value)}")
        if len(value) > spec.max_items:
            raise SchemaViolation(kind, name, f"at most {spec.max_items} items")
        for item in value:
            if not isinstance(item, str):
                raise SchemaViolation(kind, name, f"list items must be names, found {_type_name(item)}")
            if item not in spec.values:
                raise SchemaViolation(kind, name, f"list items must be among {', '.join(spec.values)}")
        if len(set(value)) != len(value):
            raise SchemaViolation(kind, name, "list items must not repeat")
        return
    raise AssertionError(f"unknown field type {spec.type}")  # pragma: no cover - table is static


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def printable_name(name: object) -> str:
    """A field or kind name safe to log: plain identifiers as they are, anything else withheld."""
    if isinstance(name, str) and _PLAIN_NAME.fullmatch(name):
        return name
    return "(withheld: not a plain name)"


def validate(kind: str, body: object) -> dict[str, object]:
    """Check ``body`` against the schema of ``kind``; return a plain dict copy (lists normalised)."""
    fields = EVENT_KINDS.get(kind)
    if fields is None:
        raise SchemaViolation(
            printable_name(kind), "(kind)", f"unknown event kind; known kinds: {', '.join(sorted(EVENT_KINDS))}"
        )
    if not isinstance(body, Mapping):
        raise SchemaViolation(kind, "(body)", f"expected a map of fields, found {_type_name(body)}")
    clean: dict[str, object] = {}
    for key in body:
        if not isinstance(key, str):
            raise SchemaViolation(kind, "(key)", f"field names must be text, found {_type_name(key)}")
        if key not in fields:
            raise SchemaViolation(kind, printable_name(key), "unknown field")
    for name, spec in fields.items():
        if name not in body:
            if spec.required:
                raise SchemaViolation(kind, name, "missing required field")
            continue
        value = body[name]
        check_field(kind, name, spec, value)
        clean[name] = list(value) if isinstance(value, tuple) else value
    return clean
