"""Issue 17 finding 4: `edge-provision init --force` starts a new, verifiable audit chain.

Before: the old chain's records stayed in audit.sqlite3 while the genesis moved to the new key, so
`edge-site audit verify` failed at record 1 for ever. Now the old log is archived (verifiable with
the old key) and the new chain's first record names the old head; `--previous` checks the hand-over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.audit.log import AuditLog
from edge.cli.site import main as site_main
from edge.crypto.keys import load_signing_key
from edge.state import StateDir
from tests.provisioning.conftest import Run


def _audit_some(state: StateDir, n: int) -> None:
    log = AuditLog.open(state.audit_db, load_signing_key(state.identity_key))
    try:
        for i in range(n):
            log.append("consent_rejected", {"reason": "expired", "size": 100 + i})
    finally:
        log.close()


def _export(state: StateDir, out: Path) -> Path:
    key = load_signing_key(state.identity_key)
    log = AuditLog.open(state.audit_db, key)
    try:
        log.export(out)
    finally:
        log.close()
    pub = out.with_suffix(".pub")
    pub.write_text(bytes(key.verify_key).hex())
    return pub


def test_init_force_archives_the_old_chain_and_the_hand_over_verifies(
    tmp_path: Path, state_dir: Path, provision: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert provision("init", "--site", "hq").code == 0
    state = StateDir(state_dir)
    _audit_some(state, 3)
    old_pub = _export(state, tmp_path / "old.cbor")

    result = provision("init", "--site", "hq", "--force")
    assert result.code == 0, result.err
    assert "the old chain is archived" in result.out
    archives = list((state_dir / "audit-archive").glob("audit-*-3.cbor"))
    assert len(archives) == 1
    _audit_some(state, 2)  # the terminal goes on auditing under its new key
    new_pub = _export(state, tmp_path / "new.cbor")
    capsys.readouterr()

    # the new log verifies on its own, and says which chain it continues
    assert site_main(["audit", "verify", str(tmp_path / "new.cbor"), "--device-key", str(new_pub)]) == 0
    out = capsys.readouterr().out
    assert "valid, 3 records" in out
    assert "audit_chain_started 1" in out
    assert "continues the log" in out
    # the archive verifies with the old key, and the hand-over matches its head
    args = ["audit", "verify", str(tmp_path / "new.cbor"), "--device-key", str(new_pub)]
    assert site_main([*args, "--previous", str(archives[0]), "--previous-key", str(old_pub)]) == 0
    assert "the hand-over to this log at its record 1 matches its head" in capsys.readouterr().out
    # another device's log offered as the archive is refused
    wrong = tmp_path / "wrong.cbor"
    wrong_state = StateDir(tmp_path / "wrong-state")
    wrong_state.ensure()
    from edge.crypto.keys import generate_signing_key

    generate_signing_key(wrong_state.identity_key)
    _audit_some(wrong_state, 3)
    wrong_pub = _export(wrong_state, wrong)
    capsys.readouterr()
    assert site_main([*args, "--previous", str(wrong), "--previous-key", str(wrong_pub)]) == 1
    assert "hand-over names another previous device key" in capsys.readouterr().err
    # an archive with a record dropped no longer verifies
    import cbor2

    doc = cbor2.loads(archives[0].read_bytes())
    doc["records"].pop()
    archives[0].write_bytes(cbor2.dumps(doc, canonical=True))
    assert site_main([*args, "--previous", str(archives[0]), "--previous-key", str(old_pub)]) == 1


def test_init_force_on_a_log_with_no_records_starts_clean(state_dir: Path, provision: Run) -> None:
    assert provision("init", "--site", "hq").code == 0
    assert provision("init", "--site", "hq", "--force").code == 0
    state = StateDir(state_dir)
    log = AuditLog.open(state.audit_db, load_signing_key(state.identity_key))
    try:
        assert log.verify().records == 0
    finally:
        log.close()
