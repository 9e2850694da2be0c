"""The tools end to end: edge-site consent keygen/issue/withdraw/publish, edge consent show/apply,
the retained list over a real Mosquitto, and the audit export checked by edge-site audit verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main as edge_main
from edge.cli.site import main as site_main
from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.distribution import Broker, fetch_retained_list
from edge.consent.ledger import ConsentLedger
from edge.crypto.keys import generate_signing_key
from edge.state import StateDir
from edge.testing.mosquitto import Mosquitto

SITE = "site-cli"
ROSTER = (
    "subject,purposes,modalities,granted_at,expires_at,status,card,pin\n"
    "p-001,access:main-gate,face;fingerprint,2020-01-01T00:00:00Z,,active,0004123456,\n"
    "p-002,access:main-gate,face,1577836800,2100-01-01T00:00:00Z,active,,73190542\n"
    "p-003,access:main-gate,,,,withdrawn,99887766,\n"
)


@pytest.fixture
def authority_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "authority"
    assert site_main(["consent", "--dir", str(root), "keygen", "--site", SITE]) == 0
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    assert site_main(["consent", "--dir", str(root), "issue", str(roster), "--valid-for", "2d"]) == 0
    capsys.readouterr()
    return root


@pytest.fixture
def state(tmp_path: Path, authority_dir: Path) -> StateDir:
    state = StateDir(tmp_path / "device")
    state.ensure()
    generate_signing_key(state.identity_key)
    for pub in authority_dir.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    trust.install_credential_key(state, Authority(authority_dir).credential_key())
    state.settings.write_text(f'[device]\nsite = "{SITE}"\n[consent]\ngrace_period_s = 3600.0\n')
    return state


def _edge(state: StateDir, *args: str) -> int:
    return edge_main(["consent", "--state-dir", str(state.root), *args])


def test_apply_then_show(authority_dir: Path, state: StateDir, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = authority_dir / "lists" / f"{SITE}-v1.cose"
    assert _edge(state, "apply", str(v1)) == 0
    assert "applied version 1 (snapshot), 3 subjects changed" in capsys.readouterr().out
    assert _edge(state, "apply", str(v1)) == 0
    assert "already in force" in capsys.readouterr().out
    assert _edge(state, "show") == 0
    out = capsys.readouterr().out
    assert "version:       1 (snapshot" in out
    assert "3 (2 active consent, 1 withdrawn, 0 expired or pending; 3 with a credential)" in out
    assert "p-001" not in out  # ids only with --entries
    assert _edge(state, "show", "--entries") == 0
    assert "p-003  withdrawn" in capsys.readouterr().out


def test_apply_exits_non_zero_with_the_reason_for_each_rejection(
    tmp_path: Path, authority_dir: Path, state: StateDir, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = authority_dir / "lists"
    v1 = lists / f"{SITE}-v1.cose"
    assert site_main(["consent", "--dir", str(authority_dir), "withdraw", "p-001"]) == 0
    v2 = lists / f"{SITE}-v2.cose"
    assert _edge(state, "apply", str(v1), str(v2)) == 0
    capsys.readouterr()

    tampered = tmp_path / "tampered.cose"
    data = bytearray(v2.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    rogue_dir = tmp_path / "rogue"
    assert site_main(["consent", "--dir", str(rogue_dir), "keygen", "--site", SITE]) == 0
    roster = tmp_path / "rogue.csv"
    roster.write_text(ROSTER)
    assert site_main(["consent", "--dir", str(rogue_dir), "issue", str(roster), "--renew"]) == 2  # usage error
    assert site_main(["consent", "--dir", str(rogue_dir), "issue", str(roster)]) == 0
    rogue_dir_list = next((rogue_dir / "lists").glob("*.cose"))
    garbage = tmp_path / "garbage.cose"
    garbage.write_bytes(b"not a list at all")
    capsys.readouterr()

    cases = {
        tampered: "bad-signature",
        v1: "rollback",  # the replayed older list
        rogue_dir_list: "unknown-key",  # signed by another key
        garbage: "malformed",
    }
    for path, reason in cases.items():
        assert _edge(state, "apply", str(path)) == 1, path
        err = capsys.readouterr().err
        assert f"{path}: rejected ({reason})" in err
    # all at once: every rejection named, non-zero exit
    assert _edge(state, "apply", *map(str, cases)) == 1
    err = capsys.readouterr().err
    for path, reason in cases.items():
        assert f"{path}: rejected ({reason})" in err
    assert _edge(state, "apply", str(tmp_path / "missing.cose")) == 1
    assert "cannot read" in capsys.readouterr().err
    # state unchanged: version 2 still in force, and every rejection is in the audit log
    ledger = ConsentLedger.open(state, SITE, grace_period_s=3600)
    try:
        assert ledger.version == 2
    finally:
        ledger.close()
    out = tmp_path / "audit.cbor"
    assert _edge(state, "export-audit", str(out)) == 0
    pub = tmp_path / "device.pub"
    from edge.crypto.keys import load_signing_key

    pub.write_text(bytes(load_signing_key(state.identity_key).verify_key).hex())
    capsys.readouterr()
    assert site_main(["audit", "verify", str(out), "--device-key", str(pub)]) == 0
    assert "consent_rejected 8" in capsys.readouterr().out


def test_withdraw_delta_is_refused_by_publish(authority_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert site_main(["consent", "--dir", str(authority_dir), "withdraw", "p-002", "--delta"]) == 0
    delta = authority_dir / "lists" / f"{SITE}-v2-delta.cose"
    assert delta.exists()
    capsys.readouterr()
    assert (
        site_main(["consent", "--dir", str(authority_dir), "publish", str(delta), "--broker", "mqtt://127.0.0.1:1"])
        == 1
    )
    assert "is a delta" in capsys.readouterr().err
    assert site_main(["consent", "--dir", str(authority_dir), "withdraw", "p-404"]) == 1
    assert "not in the roster" in capsys.readouterr().err


def test_bad_roster_rows_are_named_by_line(
    tmp_path: Path, authority_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = tmp_path / "bad.csv"
    roster.write_text("subject,purposes,modalities,pin\np-001,access:main-gate,face,12\n")
    assert site_main(["consent", "--dir", str(authority_dir), "issue", str(roster)]) == 1
    err = capsys.readouterr().err
    assert "bad.csv:2" in err
    assert "4-12 digits" in err
    assert "12," not in err  # the value itself is never echoed


@pytest.mark.mosquitto
def test_publish_retained_and_a_device_applies_it(
    mosquitto: Mosquitto, authority_dir: Path, state: StateDir, capsys: pytest.CaptureFixture[str]
) -> None:
    assert site_main(["consent", "--dir", str(authority_dir), "publish", "--broker", mosquitto.url]) == 0
    assert f"retained to sites/{SITE}/consent" in capsys.readouterr().out
    # a subscriber connecting later still receives it (retained), and the device accepts it
    message = fetch_retained_list(Broker(mosquitto.url), SITE, timeout_s=5)
    assert message == (authority_dir / "lists" / f"{SITE}-v1.cose").read_bytes()
    ledger = ConsentLedger.open(state, SITE, grace_period_s=3600)
    try:
        import time

        assert ledger.apply(message, time.time()).version == 1
        assert ledger.credential_subject("pin", "73190542", time.time()) == "p-002"
    finally:
        ledger.close()
    # nothing retained for another site
    assert fetch_retained_list(Broker(mosquitto.url), "site-none", timeout_s=2) is None
    # an unreachable broker is a one-line error
    assert site_main(["consent", "--dir", str(authority_dir), "publish", "--broker", "mqtt://127.0.0.1:1"]) == 1
    assert "cannot reach the broker" in capsys.readouterr().err


def test_an_unprovisioned_state_dir_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert edge_main(["consent", "--state-dir", str(missing), "--site", SITE, "show"]) == 1
    assert "is not a provisioned state directory" in capsys.readouterr().err
    assert not missing.exists()  # nothing was created by looking


def test_settings_come_from_the_agent_config(
    tmp_path: Path, authority_dir: Path, state: StateDir, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'version = 1\n[device]\nsite = "{SITE}"\nprofile = "sim"\nstate_dir = "{state.root}"\n'
        "[consent]\ngrace_period_s = 600\n"
    )
    v1 = authority_dir / "lists" / f"{SITE}-v1.cose"
    assert edge_main(["consent", "--config", str(config), "apply", str(v1)]) == 0
    assert edge_main(["consent", "--config", str(config), "show"]) == 0
    out = capsys.readouterr().out
    assert "(+600 s grace)" in out
    assert "state:         fresh" in out


def test_a_roster_scope_reaches_the_list_and_show_says_which_entries_cover_this_gate(
    tmp_path: Path, state: StateDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: the authority's roster names zones in a `scope` column, and the site registry
    places this gate in zone `lobby` (the list carries the gate roster); `edge consent show` on the
    gate counts the consents that cover it and marks each entry here/elsewhere."""
    from edge.crypto.keys import load_signing_key
    from edge.site.registry import Registry

    root = tmp_path / "scoped-authority"
    assert site_main(["consent", "--dir", str(root), "keygen", "--site", SITE]) == 0
    registry = Registry()
    registry.add(SITE, load_signing_key(state.identity_key).verify_key, zones=["lobby"])
    registry.add(SITE, bytes(32 * [7]), zones=["car-park"])  # another gate of the site
    registry.save(tmp_path / "devices.json")
    roster = tmp_path / "scoped.csv"
    roster.write_text(
        "subject,purposes,modalities,scope\n"
        "p-001,access:main-gate,face,lobby\n"
        "p-002,access:main-gate,face,car-park\n"
        "p-003,access:main-gate,face,\n"
    )
    issue = ["consent", "--dir", str(root), "issue", str(roster), "--registry", str(tmp_path / "devices.json")]
    assert site_main(issue) == 0
    assert ", 2 gates," in capsys.readouterr().out
    for pub in root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    assert _edge(state, "apply", str(root / "lists" / f"{SITE}-v1.cose")) == 0
    capsys.readouterr()
    assert _edge(state, "show", "--entries") == 0
    out = capsys.readouterr().out
    assert "this gate:     zones lobby; 2 active consent(s) cover it (2 entries are scoped" in out
    assert "scope lobby (here)" in out
    assert "scope car-park (elsewhere)" in out
    assert "scope site (here)" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,purposes,modalities,scope\np-009,access:main-gate,face,Lobby Main\n")
    assert site_main(["consent", "--dir", str(root), "issue", str(bad)]) != 0
    assert "scope must list" in capsys.readouterr().err
