"""The audit log: chained, head signed by the device key, every tampering found, no biometrics."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.audit.kinds import KINDS, AuditRefused
from edge.audit.log import AuditLog, AuditVerifyError, verify_export
from edge.cli.site import main as site_main
from edge.errors import StorageError


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(b"\x07" * 32)


def _filled(tmp_path: Path, key: SigningKey, n: int = 5) -> AuditLog:
    log = AuditLog.open(tmp_path / "audit.sqlite3", key)
    for i in range(n):
        log.append(
            "deletion",
            {
                "subject": f"p-{i:03d}",
                "deleted": {"gallery": {"templates": i}},
                "reason": "withdrawn",
                "list_version": 3,
            },
        )
    return log


def _rewrite(path: Path, mutate) -> None:
    doc = cbor2.loads(path.read_bytes())
    mutate(doc)
    path.write_bytes(cbor2.dumps(doc, canonical=True))


def test_export_verifies_with_the_device_public_key(tmp_path: Path, key: SigningKey) -> None:
    log = _filled(tmp_path, key)
    assert log.verify().records == 5
    out = tmp_path / "audit.cbor"
    assert log.export(out) == 5
    report = verify_export(out, key.verify_key)
    assert report.records == 5
    assert report.kinds == {"deletion": 5}
    log.close()
    # reopened, the chain continues from the stored head
    log = AuditLog.open(tmp_path / "audit.sqlite3", key)
    assert log.append("consent_applied", {"version": 4}) == 6
    log.export(out)
    assert verify_export(out, key.verify_key).records == 6
    log.close()


@pytest.mark.parametrize(
    ("what", "mutate", "reason"),
    [
        ("altered detail", lambda d: d["records"][2][3].update(list_version=2), "hash chain broken"),
        ("altered kind", lambda d: d["records"][0].__setitem__(2, "enrolment"), "hash chain broken"),
        ("dropped middle record", lambda d: d["records"].pop(1), "sequence number"),
        ("dropped last record", lambda d: d["records"].pop(), "signed head covers"),
        ("swapped records", lambda d: d["records"].reverse(), "sequence number"),
        ("altered time", lambda d: d["records"][4].__setitem__(1, 1.0), "hash chain broken"),
        (
            "head flipped",
            lambda d: d.__setitem__("head", d["head"][:-1] + bytes([d["head"][-1] ^ 1])),
            "head signature",
        ),
    ],
)
def test_every_kind_of_tampering_is_found(tmp_path: Path, key: SigningKey, what: str, mutate, reason: str) -> None:
    log = _filled(tmp_path, key)
    out = tmp_path / "audit.cbor"
    log.export(out)
    log.close()
    _rewrite(out, mutate)
    with pytest.raises(AuditVerifyError, match=reason):
        verify_export(out, key.verify_key)


def test_an_appended_record_without_the_device_key_is_found(tmp_path: Path, key: SigningKey) -> None:
    log = _filled(tmp_path, key)
    out = tmp_path / "audit.cbor"
    log.export(out)
    log.close()
    from edge.audit.log import record_hash

    def append_forged(doc: dict[str, Any]) -> None:
        prev = doc["records"][-1][4]
        details = {"subject": "p-999"}
        digest = record_hash(prev, 6, 2.0, "enrolment", cbor2.dumps(details, canonical=True))
        doc["records"].append([6, 2.0, "enrolment", details, digest])

    _rewrite(out, append_forged)
    with pytest.raises(AuditVerifyError, match="signed head covers 5"):
        verify_export(out, key.verify_key)


def test_another_devices_key_does_not_verify(tmp_path: Path, key: SigningKey) -> None:
    log = _filled(tmp_path, key)
    out = tmp_path / "audit.cbor"
    log.export(out)
    log.close()
    with pytest.raises(AuditVerifyError, match="from device key"):
        verify_export(out, SigningKey.generate().verify_key)


EMBEDDING = [((i * 37) % 101) / 101.0 for i in range(128)]
TEMPLATE_B64 = __import__("base64").b64encode(bytes(range(256)) * 3).decode()


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        ("enrolment", {"subject": "p-1", "modality": "face", "template": b"\x01\x02"}),  # bytes under any key
        ("enrolment", {"subject": "p-1", "modality": "face", "embedding": [0.1, 0.2]}),
        ("enrolment", {"subject": "p-1", "modality": "face", "vector": EMBEDDING}),
        ("enrolment", {"subject": "p-1", "modality": "face", "note": "x" * 1000}),
        ("enrolment", {"subject": "p-1", "modality": "face", "image_path": "/tmp/face.png"}),
        # issue 17 finding 6: the shapes the old guard missed
        ("enrolment", {"subject": "p-1", "modality": "face", "emb": EMBEDDING}),  # a key it did not know
        ("enrolment", {"subject": "p-1", "modality": "face", "e": [EMBEDDING[:64], EMBEDDING[64:]]}),  # 2x64
        ("enrolment", {"subject": "p-1", "modality": "face", "e": {f"k{i}": v for i, v in enumerate(EMBEDDING)}}),
        (
            "enrolment",
            {"subject": "p-1", "modality": "face", "t": [TEMPLATE_B64[i : i + 256] for i in range(0, 1024, 256)]},
        ),
        # smuggled through allowed keys: a value of the wrong type or shape is refused too
        ("deletion", {"subject": "p-1", "deleted": {"gallery": EMBEDDING}, "reason": "withdrawn", "list_version": 1}),
        (
            "deletion",
            {"subject": "p-1", "deleted": {"g": {"slots": list(range(128))}}, "reason": "withdrawn", "list_version": 1},
        ),
        ("consent_rejected", {"reason": "malformed", "detail": TEMPLATE_B64[:256]}),
        ("consent_applied", {"version": 3, "changed_subjects": [TEMPLATE_B64[:256]]}),
        ("consent_applied", {"version": 3, "changed_subjects": EMBEDDING}),
        ("enrolment", {"subject": TEMPLATE_B64[:200], "modality": "face"}),
        ("no_such_kind", {}),
    ],
)
def test_details_outside_the_allow_list_are_refused_and_nothing_is_written(
    tmp_path: Path, key: SigningKey, kind: str, details: dict[str, object]
) -> None:
    log = _filled(tmp_path, key, 1)
    with pytest.raises(AuditRefused) as refused:
        log.append(kind, details)
    assert "0.3663" not in str(refused.value)
    assert "AAEC" not in str(refused.value)
    assert log.head_seq == 1
    assert log.verify().records == 1
    log.close()
    conn = sqlite3.connect(tmp_path / "audit.sqlite3")
    stored = b"".join(row[0] for row in conn.execute("SELECT details FROM records"))
    conn.close()
    assert b"AAEC" not in stored
    assert cbor2.dumps(EMBEDDING[1]) not in stored


def test_every_kind_the_product_writes_is_allowed(tmp_path: Path, key: SigningKey) -> None:
    """The record shapes written by the ledger, the enforcer, the guard, enrolment and provisioning."""
    log = AuditLog.open(tmp_path / "audit.sqlite3", key)
    samples: dict[str, dict[str, object]] = {
        "consent_applied": {
            "version": 2,
            "previous_version": 1,
            "kind": "snapshot",
            "signer_kid": "00" * 8,
            "list_sha256": "ab" * 8,
            "changed_subjects": ["p-1"],
            "withdrawn": [],
            "removed": ["p-2"],
            "pinned_keys": [],
            "retired_keys": ["11" * 8],
        },
        "consent_rejected": {
            "reason": "version-jump",
            "detail": "version 9000000 is more than 1000000 above 1",
            "list_sha256": "ab" * 8,
            "size": 129,
            "version_in_force": None,
        },
        "deletion": {
            "subject": "p-1",
            "deleted": {"fingerprint": {"templates": 0, "slots": [4, 5], "modalities": ["fingerprint"]}},
            "reason": "not-in-list",
            "list_version": None,
        },
        "consent_stale": {
            "alarm": "consent_stale",
            "active": True,
            "list_version": 3,
            "valid_until": 1700000000,
            "grace_period_s": 86400.0,
            "at": 1700090000.5,
        },
        "enrolment": {"subject": "p-1", "modality": "fingerprint", "result": "duplicate_flagged"},
        "enrolment_refused": {"subject": "p-1", "modality": "face", "reason": "presentation_attack"},
        "egress_refused": {"event_kind": "access", "field": "template", "rule": "unknown field"},
    }
    for kind, details in samples.items():
        log.append(kind, details)
    for reason in ("no_consent", "consent_stale", "duplicate", "capture_failed"):
        log.append("enrolment_refused", {"subject": "p-2", "modality": "fingerprint", "reason": reason})
    assert log.verify().records == len(samples) + 4
    log.close()


def test_the_allow_list_in_docs_matches_the_code() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text()
    for kind, fields in KINDS.items():
        assert f"`{kind}`" in text, kind
        for name in fields:
            assert f"`{name}`" in text, (kind, name)


def test_a_database_edited_behind_the_logs_back_is_refused_at_open(tmp_path: Path, key: SigningKey) -> None:
    import sqlite3

    _filled(tmp_path, key).close()
    conn = sqlite3.connect(tmp_path / "audit.sqlite3")
    conn.execute("DELETE FROM records WHERE seq = 5")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="head does not match"):
        AuditLog.open(tmp_path / "audit.sqlite3", key)


def test_edge_site_audit_verify(tmp_path: Path, key: SigningKey, capsys: pytest.CaptureFixture[str]) -> None:
    log = _filled(tmp_path, key)
    out = tmp_path / "audit.cbor"
    log.export(out)
    log.close()
    pub = tmp_path / "device.pub"
    pub.write_text(bytes(key.verify_key).hex() + "\n")
    assert site_main(["audit", "verify", str(out), "--device-key", str(pub)]) == 0
    text = capsys.readouterr().out
    assert "5 records" in text
    assert "p-000" not in text  # subject ids only with --show
    _rewrite(out, lambda d: d["records"].pop(2))
    assert site_main(["audit", "verify", str(out), "--device-key", str(pub)]) == 1
    assert "audit log rejected at record 3" in capsys.readouterr().err
