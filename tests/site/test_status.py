"""`edge-site consent status`: per gate, enrolled / deleted with a receipt / not yet confirmed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.cli.site import main as site_main
from edge.consent.authority import Authority
from edge.consent.listformat import Gate, Place, make_entry
from edge.crypto.keys import device_id
from edge.errors import StorageError
from edge.site.status import DELETED, ENROLLED, NOT_CONFIRMED, complete, read_events, subject_status

SITE = "hq"
T0 = 1_800_000_000


def _gate(seed: int) -> tuple[str, bytes]:
    public = SigningKey(bytes([seed]) * 32).verify_key
    return device_id(public), bytes(public)


A, B, C = (_gate(i)[0] for i in (1, 2, 3))


def _event(device: str, seq: int, kind: str, **body: object) -> dict[str, object]:
    return {"site": SITE, "device": device, "kind": kind, "seq": seq, "iat": T0 + seq, "body": body}


def _enrolled(device: str, seq: int, modality: str = "face", reason: str | None = None) -> dict[str, object]:
    extra = {"reason": reason} if reason else {}
    return _event(device, seq, "enrolment", subject="p-1", modality=modality, result="enrolled", **extra)


def _receipt(device: str, seq: int, *modalities: str) -> dict[str, object]:
    return _event(
        device,
        seq,
        "deletion_receipt",
        subject="p-1",
        deleted=list(modalities),
        records=1,
        reason="withdrawn",
        consent_version=7,
        deleted_at=T0 + 100,
    )


PLACES = {A: Place(A, frozenset({"lobby"})), B: Place(B, frozenset({"lobby"})), C: Place(C, frozenset({"car-park"}))}


def test_a_withdrawal_is_complete_only_when_every_gate_that_held_templates_has_a_receipt() -> None:
    # enrolled at A, synced to B; C is out of scope and never held anything; then withdrawn
    events = [_enrolled(A, 5), _enrolled(B, 9, reason="synced"), _event(C, 3, "health", uptime_s=1)]
    active = make_entry("p-1", ["access:main-gate"], ["face"], T0 - 10, scope=["lobby"])
    rows = subject_status("p-1", events, PLACES, active, purpose=None, now=T0)
    assert [(r.gate, r.state) for r in rows] == sorted([(A, ENROLLED), (B, ENROLLED)])
    assert complete(rows)
    withdrawn = make_entry("p-1", ["access:main-gate"], ["face"], T0 - 10, status="withdrawn", scope=["lobby"])
    events.append(_receipt(A, 6, "face"))
    rows = subject_status("p-1", events, PLACES, withdrawn, purpose=None, now=T0 + 200)
    assert {r.gate: r.state for r in rows} == {A: DELETED, B: NOT_CONFIRMED}
    assert not complete(rows)
    events.append(_receipt(B, 10, "face"))
    rows = subject_status("p-1", events, PLACES, withdrawn, purpose=None, now=T0 + 200)
    assert {r.gate: r.state for r in rows} == {A: DELETED, B: DELETED}
    assert complete(rows)


def test_the_later_event_of_a_gate_decides_whatever_order_they_reached_the_verifier() -> None:
    # re-enrolled after a deletion (seq 8 > 6), delivered before the older receipt
    active = make_entry("p-1", ["access:main-gate"], ["face"], T0 - 10)
    rows = subject_status("p-1", [_enrolled(A, 8), _receipt(A, 6, "face")], PLACES, active, purpose=None, now=T0)
    assert [(r.state, r.seq) for r in rows] == [(ENROLLED, 8)]


def test_a_gate_out_of_scope_or_off_the_roster_that_still_holds_templates_is_not_confirmed() -> None:
    scoped = make_entry("p-1", ["access:main-gate"], ["face"], T0 - 10, scope=["lobby"])
    d = "gw-" + "d" * 16  # decommissioned: no longer in the roster
    rows = subject_status("p-1", [_enrolled(C, 2), _enrolled(d, 4)], PLACES, scoped, purpose=None, now=T0)
    assert {r.gate: r.state for r in rows} == {C: NOT_CONFIRMED, d: NOT_CONFIRMED}


def test_a_damaged_events_file_is_named_by_line() -> None:
    with pytest.raises(StorageError, match="events:2"):
        read_events(['{"body": {}}', "{not json"])
    with pytest.raises(StorageError, match="events:1"):
        read_events(['["a list"]'])


def test_the_command_exits_non_zero_until_every_gate_confirmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "authority"
    assert site_main(["consent", "--dir", str(root), "keygen", "--site", SITE]) == 0
    auth = Authority(root)
    auth.set_gates([Gate(g, pub, None, frozenset({"lobby"})) for g, pub in sorted((_gate(1), _gate(2)))])
    entry = make_entry("p-1", ["access:main-gate"], ["face"], T0 - 10)
    auth.issue({"p-1": entry}, now=T0)
    auth.withdraw("p-1", now=T0 + 50)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(e) for e in (_enrolled(A, 1), _enrolled(B, 1), _receipt(A, 2, "face"))) + "\n"
    )
    capsys.readouterr()
    assert site_main(["consent", "--dir", str(root), "status", "p-1", "--events", str(events)]) == 1
    out = capsys.readouterr().out
    assert "consent withdrawn" in out
    assert f"{A}  face        deleted" in out
    assert f"{B}  face        not confirmed" in out
    assert "not complete: 1 gate(s)" in out
    with events.open("a") as handle:
        handle.write(json.dumps(_receipt(B, 2, "face")) + "\n")
    assert site_main(["consent", "--dir", str(root), "status", "p-1", "--events", str(events)]) == 0
