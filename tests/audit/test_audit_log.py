"""The audit log: chained, head signed by the device key, every tampering found, no biometrics."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.audit.log import AuditLog, AuditVerifyError, verify_export
from edge.cli.site import main as site_main
from edge.errors import StorageError


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(b"\x07" * 32)


def _filled(tmp_path: Path, key: SigningKey, n: int = 5) -> AuditLog:
    log = AuditLog.open(tmp_path / "audit.sqlite3", key)
    for i in range(n):
        log.append("deletion", {"subject": f"p-{i:03d}", "deleted": {"gallery": {"templates": i}}, "list_version": 3})
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

    def append_forged(doc: dict) -> None:
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


@pytest.mark.parametrize(
    "details",
    [
        {"template": b"\x01\x02"},  # bytes of any kind
        {"embedding": [0.1, 0.2]},  # named as biometric material
        {"vector": [0.5] * 128},  # shaped like an embedding
        {"note": "x" * 1000},  # long text
        {"image_path": "/tmp/face.png"},
    ],
)
def test_biometric_looking_details_are_refused_and_nothing_is_written(
    tmp_path: Path, key: SigningKey, details: dict
) -> None:
    log = _filled(tmp_path, key, 1)
    with pytest.raises(ValueError, match="audit"):
        log.append("enrolment", details)
    assert log.head_seq == 1
    assert log.verify().records == 1
    log.close()


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
