"""The audit log's allow-list: every record kind, its detail keys and their value types. Pure.

An audit record's details are accepted only when its kind is listed here and every key is one
of the kind's keys, holding a value of that key's narrow type (a pseudonym, a short code, a
bounded integer, a hex digest, a list of pseudonyms, ...). Nothing else is written: no unknown
key whatever its name, no byte string, no free-form list of numbers, no nested map except the
one documented shape (``deletion.deleted``). This replaces a guard that looked for
biometric-looking shapes and names, which a 2x64 list, a dict of 128 floats, a key named ``emb``
or a base64 template cut into 256-character pieces walked past. docs/privacy.md lists the same
table; a test checks the two agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.errors import EdgeError
from edge.modality import BIOMETRIC, in_order

PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
CODE = re.compile(r"[a-z][a-z0-9_\-]{0,47}")
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,31}")
HEX16 = re.compile(r"[0-9a-f]{16}")
KEY_ID = re.compile(r"[0-9a-f]{8}")  # edge.osdp.scbk.key_id
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
GATE = re.compile(r"gw-[0-9a-f]{16}")
PURPOSE = re.compile(r"[a-z0-9][a-z0-9._\-]*(:[A-Za-z0-9._\-]+)*")
#: Short operator-readable text: printable ASCII only, at most 200 characters.
NOTE = re.compile(r"[ -~]{0,200}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
INT_MAX = 2**63 - 1
MAX_SUBJECTS = 1_000_000  # a consent list's entry limit (edge.consent.listformat.MAX_ENTRIES)


class AuditRefused(EdgeError, ValueError):  # noqa: N818 - reads as what happened
    """Details refused by the allow-list. The message names the kind, key and rule, never the value."""

    hint = "audit records hold only the keys and types documented in docs/privacy.md"

    def __init__(self, kind: str, key: str, rule: str) -> None:
        self.kind = kind
        self.key = key
        self.rule = rule
        super().__init__(f"audit {_printable(kind)}.{_printable(key)} refused: {rule}")


def _printable(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\[\].]{0,63}", name) else "(withheld)"


@dataclass(frozen=True)
class Value:
    """One value's type: ``text`` (matching ``pattern``), ``enum``, ``int``, ``number``, ``bool``,
    ``list`` (of ``item``), ``record`` (a map of ``fields``) or ``table`` (a map from ``pattern``
    keys to ``item`` values)."""

    type: str
    pattern: re.Pattern[str] | None = None
    values: tuple[str, ...] = ()
    nullable: bool = False
    required: bool = True
    minimum: float = 0
    maximum: float = INT_MAX
    max_items: int = 0
    item: Value | None = None
    fields: Mapping[str, Value] = field(default_factory=dict)


def text(pattern: re.Pattern[str], *, required: bool = True, nullable: bool = False) -> Value:
    return Value("text", pattern=pattern, required=required, nullable=nullable)


def enum(*values: str, required: bool = True) -> Value:
    return Value("enum", values=values, required=required)


def integer(*, required: bool = True, nullable: bool = False, maximum: int = INT_MAX) -> Value:
    return Value("int", required=required, nullable=nullable, maximum=maximum)


def number(minimum: float, maximum: float, *, required: bool = True) -> Value:
    return Value("number", required=required, minimum=minimum, maximum=maximum)


def boolean(*, required: bool = True) -> Value:
    return Value("bool", required=required)


def listof(item: Value, max_items: int, *, required: bool = True) -> Value:
    return Value("list", item=item, max_items=max_items, required=required)


def record(fields: Mapping[str, Value], *, required: bool = True) -> Value:
    return Value("record", fields=fields, required=required)


def table(keys: re.Pattern[str], item: Value, max_items: int, *, required: bool = True) -> Value:
    return Value("table", pattern=keys, item=item, max_items=max_items, required=required)


LIST_REASONS = (
    "malformed",
    "unknown-key",
    "bad-signature",
    "bad-algorithm",
    "malformed-body",
    "wrong-site",
    "rollback",
    "replay",
    "version-jump",
    "delta-base",
    "not-yet-valid",
    "expired",
    "bad-key-announcement",
    "oversize",
)
MODALITY = enum(*(m.value for m in in_order(BIOMETRIC)))
#: Why a template parcel from another gate was not stored (edge.sync).
SYNC_REFUSALS = (
    "malformed",
    "unknown-sender",
    "bad-signature",
    "wrong-site",
    "wrong-recipient",
    "not-for-us",
    "sender-mismatch",
    "bad-template",
    "bad-contents",
    "bad-address",
    "no_consent",
    "consent_stale",
    "older_than_consent",
    "model_mismatch",
    "sensor_mismatch",
    "sensor_failed",
)
#: What one store deleted for one subject (``BiometricStore.delete_subject``'s summary).
DELETED_BY_STORE = record(
    {
        "templates": integer(required=False, maximum=1_000_000),
        "slots": listof(integer(maximum=65535), 64, required=False),
        "modalities": listof(MODALITY, 2, required=False),
        "records": integer(required=False, maximum=1_000_000),
    }
)

KINDS: dict[str, dict[str, Value]] = {
    "consent_applied": {
        "version": integer(),
        "previous_version": integer(nullable=True, required=False),
        "kind": enum("snapshot", "delta", required=False),
        "signer_kid": text(HEX16, required=False),
        "list_sha256": text(HEX16, required=False),
        "changed_subjects": listof(text(PSEUDONYM), MAX_SUBJECTS, required=False),
        "withdrawn": listof(text(PSEUDONYM), MAX_SUBJECTS, required=False),
        "removed": listof(text(PSEUDONYM), MAX_SUBJECTS, required=False),
        "pinned_keys": listof(text(HEX16), 16, required=False),
        "retired_keys": listof(text(HEX16), 16, required=False),
    },
    "consent_rejected": {
        "reason": enum(*LIST_REASONS),
        "detail": text(NOTE, required=False),
        "list_sha256": text(HEX16, required=False),
        "size": integer(required=False),
        "version": integer(nullable=True, required=False),
        "version_in_force": integer(nullable=True, required=False),
    },
    "deletion": {
        "subject": text(PSEUDONYM),
        "deleted": table(IDENT, DELETED_BY_STORE, 8),
        "reason": text(CODE),
        "list_version": integer(nullable=True),
    },
    "consent_stale": {
        "alarm": text(CODE),
        "active": boolean(),
        "list_version": integer(nullable=True, required=False),
        "valid_until": integer(nullable=True, required=False),
        "grace_period_s": number(0, 10 * 365 * 86400, required=False),
        "at": number(0, 2**40, required=False),
    },
    "enrolment": {
        "subject": text(PSEUDONYM),
        "modality": MODALITY,
        "result": enum("enrolled", "duplicate_flagged", required=False),
        "purpose": text(PURPOSE, required=False, nullable=True),
        "list_version": integer(nullable=True, required=False),
        "source": text(GATE, required=False),
    },
    "enrolment_refused": {
        "subject": text(PSEUDONYM),
        "modality": MODALITY,
        "reason": enum(
            "no_consent", "consent_stale", "presentation_attack", "duplicate", "capture_failed", required=False
        ),
        "why": text(NOTE, required=False),
    },
    "sync_sent": {
        "subject": text(PSEUDONYM),
        "modality": MODALITY,
        "recipients": listof(text(GATE), 10_000),
    },
    "sync_refused": {
        "sender": text(GATE, required=False),
        "parcel": text(HEX32, required=False),
        "reason": enum(*SYNC_REFUSALS),
        "subject": text(PSEUDONYM, required=False),
        "modality": enum("face", "fingerprint", required=False),
    },
    "egress_refused": {
        "event_kind": text(NOTE),
        "field": text(NOTE),
        "rule": text(NOTE),
    },
    "audit_chain_started": {
        "reason": enum("reprovisioned", "damaged"),
        # a damaged log's head may be unreadable: then only the archive (the file set aside) is named
        "previous_kid": text(HEX16, required=False),
        "previous_head_seq": integer(required=False),
        "previous_head_hash": text(HEX64, required=False),
        "archive": text(FILE_NAME),
        "salvaged": integer(required=False),
    },
    # issue 13: a face refused by the liveness check (never a score or an image)
    "presentation_attack": {
        "door": text(PSEUDONYM, required=False),
        "recent": integer(maximum=1_000_000),
        "window_s": number(0, 86400 * 7, required=False),
    },
    # issue 15: the case switch, and the OSDP Secure Channel key (its id only, never the key)
    "tamper": {
        "opened": boolean(),
        "erased": listof(enum("gallery_key", "sensor_library"), 2, required=False),
        "at": number(0, 2**40, required=False),
    },
    # issue 16: a gallery row that failed authentication, set aside unread (subject where known)
    "gallery_quarantine": {
        "subject": text(PSEUDONYM, required=False),
        "modality": MODALITY,
        "item": enum("record", "template"),
        "reason": enum("authentication", "misfiled", "orphan", "record_damaged"),
        "quarantine_id": integer(required=False),
    },
    # issue 16: a store that could not be opened, moved aside and started afresh (or not)
    "store_replaced": {
        "store": enum("outbox", "audit", "consent", "gallery"),
        "aside": text(FILE_NAME),
        "detail": text(NOTE, required=False),
        "salvaged": integer(required=False),
        "fresh": boolean(),
    },
    # issue 16: start-up failed the same way 3 times; the agent runs the credential path only
    "safe_mode": {
        "active": boolean(),
        "reason": text(NOTE),
        "attempts": integer(maximum=1_000_000, required=False),
    },
    "osdp_key": {
        "how": enum("hex", "generated", "install_mode", "panel_keyset"),
        "key_id": text(KEY_ID),
    },
}
KINDS["consent_fresh"] = KINDS["consent_stale"]


def _check(kind: str, key: str, spec: Value, value: object) -> None:
    if value is None:
        if spec.nullable:
            return
        raise AuditRefused(kind, key, "null is not allowed")
    if spec.type in ("text", "enum"):
        if not isinstance(value, str):
            raise AuditRefused(kind, key, f"expected text, found {type(value).__name__}")
        if spec.type == "enum" and value not in spec.values:
            raise AuditRefused(kind, key, f"expected one of {', '.join(spec.values)}")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise AuditRefused(kind, key, f"text does not match {spec.pattern.pattern}")
        return
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise AuditRefused(kind, key, f"expected an integer, found {type(value).__name__}")
        if not spec.minimum <= value <= spec.maximum:
            raise AuditRefused(kind, key, f"integer out of range {int(spec.minimum)}..{int(spec.maximum)}")
        return
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuditRefused(kind, key, f"expected one number, found {type(value).__name__}")
        if not math.isfinite(value) or not spec.minimum <= value <= spec.maximum:
            raise AuditRefused(kind, key, f"number out of range {spec.minimum}..{spec.maximum}")
        return
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise AuditRefused(kind, key, f"expected true or false, found {type(value).__name__}")
        return
    if spec.type == "list":
        assert spec.item is not None
        if not isinstance(value, list | tuple):
            raise AuditRefused(kind, key, f"expected a list, found {type(value).__name__}")
        if len(value) > spec.max_items:
            raise AuditRefused(kind, key, f"at most {spec.max_items} items")
        for item in value:
            _check(kind, key + "[]", spec.item, item)
        return
    if spec.type == "record":
        check_fields(kind, spec.fields, value, key + ".")
        return
    if spec.type == "table":
        assert spec.item is not None
        assert spec.pattern is not None
        if not isinstance(value, Mapping):
            raise AuditRefused(kind, key, f"expected a map, found {type(value).__name__}")
        if len(value) > spec.max_items:
            raise AuditRefused(kind, key, f"at most {spec.max_items} entries")
        for name, item in value.items():
            if not isinstance(name, str) or not spec.pattern.fullmatch(name):
                raise AuditRefused(kind, key, f"keys must match {spec.pattern.pattern}")
            _check(kind, f"{key}.{name}", spec.item, item)
        return
    raise AssertionError(f"unknown type {spec.type}")  # pragma: no cover - the table is static


def check_fields(kind: str, fields: Mapping[str, Value], details: object, prefix: str = "") -> None:
    if not isinstance(details, Mapping):
        raise AuditRefused(kind, prefix or "details", f"expected a map, found {type(details).__name__}")
    for key in details:
        if not isinstance(key, str) or key not in fields:
            raise AuditRefused(kind, prefix + (key if isinstance(key, str) else "(key)"), "not an allowed key")
    for name, spec in fields.items():
        if name not in details:
            if spec.required:
                raise AuditRefused(kind, prefix + name, "missing required key")
            continue
        _check(kind, prefix + name, spec, details[name])


def check(kind: str, details: object) -> None:
    """Raise ``AuditRefused`` unless ``details`` are allowed for ``kind``."""
    fields = KINDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise AuditRefused(str(kind)[:64], "(kind)", f"unknown record kind; known: {', '.join(sorted(KINDS))}")
    check_fields(kind, fields, details)
