"""The typed events: the schema derived from them is the published one, ``body()`` renders each
field once, and every producer builds them (no body dicts translated on the way out)."""

from __future__ import annotations

import ast
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from edge.events.fields import CODE, HEX256, IDENT, INT_MAX, PSEUDONYM, Field, enum, enum_list, integer, number, text
from edge.events.guard import check
from edge.events.kinds import (
    EVENT_TYPES,
    Access,
    Alarm,
    ConsentApplied,
    ConsentRejected,
    DeletionReceipt,
    Enrolment,
    Health,
    Tamper,
    spec_of,
)
from edge.events.schema import EVENT_KINDS
from edge.modality import Modality

ROOT = Path(__file__).resolve().parents[2]
MODALITIES = ("face", "fingerprint", "card", "pin", "qr")

#: The table as it was written by hand before it was derived (main before issue 18's second half):
#: the derived one must be exactly this, so nothing published changed shape.
PUBLISHED: dict[str, dict[str, Field]] = {
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
    "deletion_receipt": {
        "subject": text(PSEUDONYM),
        "deleted": enum_list(*MODALITIES),
        "records": integer(0, 1_000_000),
        "reason": enum("withdrawn", "expired", "not_listed", "out_of_scope", "admin"),
        "consent_version": integer(),
        "deleted_at": integer(),
    },
    "consent_applied": {
        "version": integer(),
        "entries": integer(0, 10_000_000),
        "issued_at": integer(required=False),
        "digest": text(HEX256, required=False),
    },
    "consent_rejected": {"version": integer(nullable=True), "reason": text(CODE)},
    "tamper": {"source": text(CODE), "state": enum("raised", "cleared")},
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


def test_the_schema_derived_from_the_dataclasses_is_the_published_one() -> None:
    assert list(EVENT_KINDS) == list(PUBLISHED)
    for kind, fields in PUBLISHED.items():
        assert list(EVENT_KINDS[kind]) == list(fields), kind
        for name, spec in fields.items():
            assert asdict(EVENT_KINDS[kind][name]) == asdict(spec), f"{kind}.{name}"
    assert INT_MAX == 2**53


FULL = [
    Access("granted", Modality.face, "p-1", "granted_two_factor", "north-1", 7, 180),
    Enrolment("p-1", Modality.fingerprint, "enrolled", "possible_duplicate", 7),
    DeletionReceipt("p-1", (Modality.face, Modality.fingerprint), 4, "not_listed", 7, 1_800_000_000),
    ConsentApplied(7, 120, 1_800_000_000, "ab" * 32),
    ConsentRejected(None, "bad_signature"),
    Tamper("case_open", "raised"),
    Alarm("outbox_dropped", "critical", "raised", "outbox", 2, 5, 6),
    Health(10, 0, 3, (Modality.face, Modality.card), 7, "gate-edge-0.1.0", 51.5, 0.5, 1024),
]


@pytest.mark.parametrize("event", FULL, ids=lambda e: e.kind)
def test_every_field_of_every_kind_renders_as_its_wire_type_and_passes_the_guard(event: object) -> None:
    assert {type(e) for e in FULL} == set(EVENT_TYPES)
    body = event.body()  # type: ignore[attr-defined]
    kind = event.kind  # type: ignore[attr-defined]
    assert list(body) == list(spec_of(type(event)))  # type: ignore[arg-type]
    assert check(kind, body) == body  # nothing to normalise: enums are text, tuples are lists
    for value in body.values():
        assert value is None or type(value) in (str, int, float, list)
        if isinstance(value, list):
            assert all(type(v) is str for v in value)


def test_absent_optional_fields_are_left_out_and_nullable_ones_are_null() -> None:
    assert Access("denied", Modality.pin, None, "unknown_credential").body() == {
        "decision": "denied",
        "modality": "pin",
        "subject": None,
        "reason": "unknown_credential",
    }
    assert Health(1, 0).body() == {"uptime_s": 1, "outbox_depth": 0, "consent_version": None}
    assert Health(1, 0, modalities=()).body()["modalities"] == []


def _emit_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("emit", "_emit")
    ]


def test_no_producer_emits_a_body_dict() -> None:
    """The gate, the enforcer and the consent service emitted ``(kind, dict)`` that a translation
    layer rewrote (``granted: True`` to ``decision``, ``face+card`` split again). Tried: every
    ``emit``/``_emit`` call in edge/ and provisioning/ (the Wiegand bit emitter aside) takes one
    argument that is not a literal."""
    offenders = []
    for package in ("edge", "provisioning"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "wiegand_out.py":
                continue  # emits Wiegand bits on the door's lines, not events
            for call in _emit_calls(ast.parse(path.read_text())):
                literal = any(isinstance(a, (ast.Constant, ast.Dict)) for a in call.args)
                if len(call.args) != 1 or literal:
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert offenders == []


def test_the_modality_vocabulary_is_defined_once() -> None:
    """The modality names were defined six times (decide.py, the gallery, the consent list format,
    the schema, the agent's event translation, the credentials). Tried: every tuple, set or
    ``Literal``, choice or default in edge/ and provisioning/ listing two or more modality names,
    outside edge/modality.py (data, like the demo's consent entries, may name them)."""
    names = {m.value for m in Modality}
    name = '"(?:face|fingerprint|card|pin|qr)"'
    pattern = re.compile(rf"(Literal\[|=\s*(frozenset\(\{{?)?[(\[{{]|Choice\(\[)\s*({name},\s*){{1,4}}{name}")
    found = []
    for package in ("edge", "provisioning"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "edge" / "modality.py":
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert names == set(MODALITIES)
    assert found == []
