"""The egress guard refuses anything outside the schema, audits the refusal, never keeps the value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events.guard import EgressRefused, Guard, check
from edge.events.kinds import Access
from edge.events.schema import EVENT_KINDS
from edge.modality import Modality

ACCESS = {"decision": "denied", "modality": "fingerprint", "subject": None, "reason": "no_match"}


class ListAudit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, object]]] = []

    def append(self, kind: str, details: Mapping[str, object]) -> None:
        self.records.append((kind, dict(details)))


EMBEDDING = np.random.default_rng(7).standard_normal(128).astype(np.float32)
IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
TEMPLATE = bytes([0x03, 0x03]) + bytes(range(200)) * 2


@pytest.mark.parametrize(
    ("kind", "body", "field", "rule"),
    [
        ("access", {**ACCESS, "embedding": EMBEDDING.tolist()}, "embedding", "unknown field"),
        ("access", {**ACCESS, "reason": IMAGE}, "reason", "byte strings"),
        ("access", {**ACCESS, "subject": TEMPLATE}, "subject", "byte strings"),
        ("access", {**ACCESS, "subject": EMBEDDING}, "subject", "expected text"),
        ("access", {**ACCESS, "reason": "a" * 49}, "reason", "does not match"),
        ("access", {**ACCESS, "subject": "QUJD" * 40}, "subject", "does not match"),  # base64 blob as a pseudonym
        ("access", {**ACCESS, "door": {"image": "x"}}, "door", "expected text"),
        ("health", {"uptime_s": 1, "outbox_depth": 0, "cpu_temp_c": [36.5, 37.0]}, "cpu_temp_c", "one number"),
        ("health", {"uptime_s": 1, "outbox_depth": 0, "modalities": [0.1, 0.2]}, "modalities", "must be names"),
        ("health", {"uptime_s": 1, "outbox_depth": 0, "cpu_temp_c": float("nan")}, "cpu_temp_c", "out of range"),
        ("health", {"uptime_s": True, "outbox_depth": 0}, "uptime_s", "expected an integer"),
        ("health", {"uptime_s": 1}, "outbox_depth", "missing required"),
        (
            "deletion_receipt",
            {
                "subject": "p1",
                "deleted": ["face", "face"],
                "records": 1,
                "reason": "withdrawn",
                "consent_version": 3,
                "deleted_at": 1,
            },
            "deleted",
            "repeat",
        ),
        ("selfie", {"x": 1}, "(kind)", "unknown event kind"),
        ("access", [("decision", "granted")], "(body)", "expected a map"),
    ],
)
def test_refusals_are_raised_and_audited_without_the_value(
    kind: str, body: object, field: str, rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    audit = ListAudit()
    with pytest.raises(EgressRefused) as info:
        check(kind, body, audit=audit)  # type: ignore[arg-type]
    assert info.value.field == field
    assert rule in info.value.rule
    assert audit.records == [
        ("egress_refused", {"event_kind": info.value.kind, "field": field, "rule": info.value.rule})
    ]
    # The refused value is in neither the exception, the audit record nor the log.
    rendered = str(info.value) + repr(audit.records) + caplog.text
    assert "QUJDQUJD" not in rendered
    assert "0.1" not in rendered
    assert "\\xff\\xd8" not in rendered


def test_a_field_name_carrying_data_is_withheld_from_logs_and_audit() -> None:
    audit = ListAudit()
    name = "AAAA" + "x9/+" * 30
    with pytest.raises(EgressRefused) as info:
        check("access", {**ACCESS, name: 1}, audit=audit)
    assert name not in str(info.value)
    assert name not in repr(audit.records)


def test_good_bodies_pass_for_every_kind() -> None:
    good = {
        "access": ACCESS,
        "enrolment": {"subject": "p-7", "modality": "face", "result": "enrolled", "consent_version": 4},
        "deletion_receipt": {
            "subject": "p-7",
            "deleted": ["face", "fingerprint"],
            "records": 3,
            "reason": "withdrawn",
            "consent_version": 5,
            "deleted_at": 1_700_000_000,
        },
        "consent_applied": {"version": 5, "entries": 120, "digest": "ab" * 32},
        "consent_rejected": {"version": None, "reason": "bad_signature"},
        "tamper": {"source": "case_open", "state": "raised"},
        "alarm": {"code": "camera_failed", "severity": "warning", "state": "raised"},
        "health": {"uptime_s": 10, "outbox_depth": 0, "cpu_temp_c": 51.5, "modalities": ("face", "card")},
    }
    assert set(good) == set(EVENT_KINDS)
    for kind, body in good.items():
        clean = Guard().check(kind, body)
        assert clean == {k: list(v) if isinstance(v, tuple) else v for k, v in body.items()}


def _contains_forbidden(value: object) -> bool:
    if isinstance(value, (bytes, bytearray, dict)):
        return True
    if isinstance(value, (list, tuple)):
        return any(not isinstance(v, str) for v in value)
    return isinstance(value, str) and len(value) > 64


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(sorted({f for fields in EVENT_KINDS.values() for f in fields} | {"image", "template"}))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(EVENT_KINDS)), body=st.dictionaries(field_names, values, max_size=8))
def test_whatever_the_body_nothing_forbidden_gets_through(kind: str, body: dict[str, object]) -> None:
    try:
        clean = check(kind, body)
    except EgressRefused:
        return
    assert set(clean) <= set(EVENT_KINDS[kind])
    assert not any(_contains_forbidden(v) for v in clean.values())


def test_docs_cddl_lists_exactly_the_fields_of_the_code() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    for kind, fields in EVENT_KINDS.items():
        block = re.search(rf"^{kind.replace('_', '-')}-body = \{{(.*?)^\}}", text, re.S | re.M)
        assert block is not None, f"docs/events.md has no CDDL for {kind}"
        names = {name: opt == "?" for opt, name in re.findall(r"^\s*(\?)?\s*([a-z_0-9]+):", block.group(1), re.M)}
        assert names == {name: not spec.required for name, spec in fields.items()}, kind


def test_docs_cddl_lists_exactly_the_values_of_every_enum_field() -> None:
    """A receipt reason (or any enum value) added to the code but not to the CDDL, or the other
    way round, fails here. Tried: every enum and enum-list field of every kind, the CDDL's
    `modality` type expanded to its alternatives."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    alias = re.search(r"^modality = (.*)$", text, re.M)
    assert alias is not None, "docs/events.md no longer defines the modality type"
    modality = alias.group(1)
    checked = 0
    for kind, fields in EVENT_KINDS.items():
        block = re.search(rf"^{kind.replace('_', '-')}-body = \{{(.*?)^\}}", text, re.S | re.M)
        assert block is not None, f"docs/events.md has no CDDL for {kind}"
        for name, spec in fields.items():
            if spec.type not in ("enum", "enum_list"):
                continue
            line = re.search(rf"^\s*\??\s*{name}:([^;\n]*)", block.group(1), re.M)
            assert line is not None, f"{kind}.{name} is not in the CDDL"
            declared = re.sub(r"\bmodality\b", modality, line.group(1))
            assert set(re.findall(r'"([a-z_]+)"', declared)) == set(spec.values), f"{kind}.{name}"
            checked += 1
    assert checked >= 10  # the reason, decision, result, state ... fields were all compared


def test_an_emitted_event_passes_the_guard_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox sink checked a body and the signer checked the same body again. Tried: one access
    event through the production sink, counting schema validations."""
    from nacl.signing import SigningKey

    import edge.events.guard as guard
    from edge.crypto.keys import device_id
    from edge.events.envelope import EventSigner
    from edge.events.outbox_sink import OutboxSink
    from edge.transport.outbox import Outbox

    calls: list[str] = []
    real = guard.validate

    def counting(kind: str, body: object) -> dict[str, object]:
        calls.append(kind)
        return real(kind, body)

    monkeypatch.setattr(guard, "validate", counting)
    key = SigningKey.generate()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        sink = OutboxSink(EventSigner(key, device_id(key.verify_key), outbox), outbox, "hq")
        sink.emit(Access("denied", Modality.card, None, "unknown_credential"))
        assert outbox.depth() == 1
    finally:
        outbox.close()
    assert calls == ["access"]
