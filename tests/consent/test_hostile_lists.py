"""Issue 17 findings 1 and 5 on the device side: the attacks, performed as described.

1. The 129-byte COSE_Sign1 with a shared-reference cycle (tags 28/29), as a file for
   `edge consent apply`: before, a traceback and no audit record; now a one-line rejection
   (`malformed`), exit 1, and a `consent_rejected` record.
5. A list with version 2**63 - 1: before, accepted, and every later list refused as a rollback;
   now refused (`version-jump`) and audited, and the next ordinary list still applies.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edge.audit.log import AuditLog
from edge.cli.main import main as edge_main
from edge.consent.authority import Authority
from edge.consent.ledger import ConsentLedger
from edge.consent.listformat import ConsentList
from edge.consent.signing import MAX_VERSION_STEP, ListRejected, sign_list
from edge.crypto.keys import generate_signing_key, load_signing_key
from edge.state import StateDir
from edge.testing.hostile import issue17_cycle_message
from tests.consent.consent_helpers import SITE, T0, Device, entry


def _rejections(audit: AuditLog) -> list[dict[str, object]]:
    return [r.details for r in audit.records() if r.kind == "consent_rejected"]


def test_the_cycle_message_as_a_file_is_a_one_line_rejection_and_audited(
    tmp_path: Path, authority: Authority, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.consent.consent_helpers import provision

    state: StateDir = provision(tmp_path / "dev", authority)
    generate_signing_key(state.identity_key)
    state.settings.write_text(f'[device]\nsite = "{SITE}"\n')
    poison = tmp_path / "poison.cose"
    poison.write_bytes(issue17_cycle_message())
    assert len(poison.read_bytes()) == 129

    code = edge_main(["consent", "--state-dir", str(state.root), "apply", str(poison)])

    captured = capsys.readouterr()
    assert code == 1
    assert f"{poison}: rejected (malformed)" in captured.err
    assert "Traceback" not in captured.err
    assert "CBOREncode" not in captured.err
    audit = AuditLog.open(state.audit_db, load_signing_key(state.identity_key))
    try:
        (record,) = _rejections(audit)
        assert record["reason"] == "malformed"
        assert record["size"] == 129
        assert audit.verify().records == 1
    finally:
        audit.close()


def test_the_cycle_message_through_the_ledger(device: Device) -> None:
    with pytest.raises(ListRejected) as refused:
        device.ledger.apply(issue17_cycle_message(), T0)
    assert refused.value.reason == "malformed"
    assert "tag 28" in refused.value.detail


def _forged_version(authority: Authority, version: int, entries: tuple[object, ...] = ()) -> bytes:
    """A list signed by the site's real authority key (a mistaken issue, or a stolen key)."""
    state = authority.load_state()
    lst = ConsentList(SITE, "snapshot", version, int(T0), int(T0) + 86400, tuple(entries))  # type: ignore[arg-type]
    return sign_list(authority.signing_key(state.active_kid), lst)


def test_an_absurd_version_is_refused_and_audited_and_updates_go_on(device: Device, authority: Authority) -> None:
    v1, _ = authority.issue({"p-1": entry("p-1")}, now=T0)
    assert device.ledger.apply(v1, T0).version == 1

    for absurd in (2**63 - 1, 1 + MAX_VERSION_STEP + 1):
        with pytest.raises(ListRejected) as refused:
            device.ledger.apply(_forged_version(authority, absurd), T0)
        assert refused.value.reason == "version-jump"
    assert device.ledger.version == 1
    assert [r["reason"] for r in _rejections(device.audit)] == ["version-jump", "version-jump"]

    # the authority's next ordinary list still applies (before the fix: refused as a rollback)
    v2, _ = authority.issue({"p-1": entry("p-1"), "p-2": entry("p-2")}, now=T0 + 1)
    assert device.ledger.apply(v2, T0 + 1).version == 2
    # a step of exactly the documented maximum is accepted
    at_limit = _forged_version(authority, 2 + MAX_VERSION_STEP)
    assert device.ledger.apply(at_limit, T0 + 2).version == 2 + MAX_VERSION_STEP


def test_an_absurd_first_version_is_refused_too(device: Device, authority: Authority) -> None:
    with pytest.raises(ListRejected) as refused:
        device.ledger.apply(_forged_version(authority, 2**63 - 1), T0)
    assert refused.value.reason == "version-jump"
    assert device.ledger.version is None
    reopened: ConsentLedger = device.reopen()
    assert reopened.version is None


def test_the_authority_refuses_to_issue_past_the_ceiling(authority: Authority) -> None:
    from edge.consent.signing import MAX_VERSION
    from edge.errors import ConsentError

    state = authority.load_state()
    authority.save_state(replace(state, version=MAX_VERSION))
    with pytest.raises(ConsentError, match="ceiling"):
        authority.issue({}, now=T0)
