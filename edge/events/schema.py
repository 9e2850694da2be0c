"""The schema of every event body the device may publish: a pure table, no I/O.

The table is derived from the event dataclasses (``edge.events.kinds``: one per kind, each field
annotated with its wire type from ``edge.events.fields``). Nothing in it can hold a byte string, a
nested map, a list of numbers or a long free-form string, so no field can carry an image, an
embedding or a sensor template. ``docs/events.md`` gives the same schema in CDDL; a test checks
that the two agree. ``validate`` is what the egress guard and the verifier run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from edge.events.fields import CODE, HEX256, IDENT, INT_MAX, PSEUDONYM, Field
from edge.events.kinds import EVENT_TYPES, spec_of
from edge.modality import ALL

__all__ = [
    "CODE",
    "EVENT_KINDS",
    "HEX256",
    "IDENT",
    "INT_MAX",
    "MODALITIES",
    "PSEUDONYM",
    "Field",
    "SchemaViolation",
    "check_field",
    "printable_name",
    "validate",
]

MODALITIES = tuple(m.value for m in ALL)

#: kind -> field name -> wire type, for every event kind (derived from ``edge.events.kinds``).
EVENT_KINDS: dict[str, dict[str, Field]] = {cls.kind: spec_of(cls) for cls in EVENT_TYPES}


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
