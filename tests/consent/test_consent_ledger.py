"""The device ledger: verification, every rejection reason, atomic persistence, deltas, rotation."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.consent.authority import Authority
from edge.consent.ledger import ConsentLedger, ListRejected
from edge.consent.listformat import ConsentList
from edge.consent.signing import sign_list
from edge.crypto.cose import sign1
from edge.crypto.keys import key_id
from tests.consent.consent_helpers import PURPOSE, SITE, T0, Device, entry, provision


def _snapshot(auth: Authority, *subjects: str, now: float = T0) -> bytes:
    message, _ = auth.issue({s: entry(s) for s in subjects}, now=now)
    return message


def _db_digest(dev: Device) -> str:
    """Everything the ledger persisted, as one digest (to prove a rejection changed nothing)."""
    conn = dev.ledger._conn
    rows = list(conn.execute("SELECT * FROM meta")) + list(conn.execute("SELECT * FROM entries ORDER BY subject"))
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_a_valid_snapshot_is_applied_persisted_and_survives_reopen(authority: Authority, device: Device) -> None:
    message = _snapshot(authority, "p-001", "p-002")
    outcome = device.ledger.apply(message, T0)
    assert outcome.changed
    assert outcome.version == 1
    assert outcome.affected == {"p-001", "p-002"}
    assert device.ledger.allows("p-001", "face", PURPOSE, T0)
    assert not device.ledger.allows("p-001", "face", "access:other", T0)
    assert not device.ledger.allows("p-003", "face", PURPOSE, T0)
    ledger = device.reopen()
    assert ledger.version == 1
    assert [e.subject for e in ledger.entries()] == ["p-001", "p-002"]
    assert ledger.allows("p-002", "fingerprint", PURPOSE, T0)
    # a retained redelivery of the same bytes is a no-op, not a rejection
    assert ledger.apply(message, T0 + 5).changed is False


def test_every_single_bit_change_is_rejected_and_changes_nothing(authority: Authority, device: Device) -> None:
    device.ledger.apply(_snapshot(authority, "p-001"), T0)
    message = _snapshot(authority, "p-001", "p-002", now=T0 + 10)
    before = _db_digest(device)
    audit_before = device.audit.head_seq
    reasons: set[str] = set()
    tried = 0
    for position in range(len(message)):
        for bit in range(8):
            tampered = bytearray(message)
            tampered[position] ^= 1 << bit
            with pytest.raises(ListRejected) as info:
                device.ledger.apply(bytes(tampered), T0 + 20)
            reasons.add(info.value.reason)
            tried += 1
    assert tried == 8 * len(message)
    assert _db_digest(device) == before
    assert device.ledger.version == 1
    assert not device.ledger.allows("p-002", "face", PURPOSE, T0 + 20)
    # each rejection was audited
    rejected = [r for r in device.audit.records(audit_before) if r.kind == "consent_rejected"]
    assert len(rejected) == tried
    assert reasons <= ListRejected.REASONS
    assert {"bad-signature", "malformed"} <= reasons
    # and the untampered list still applies afterwards
    assert device.ledger.apply(message, T0 + 20).version == 2


def test_replayed_older_list_is_rejected_as_rollback(authority: Authority, device: Device) -> None:
    old = _snapshot(authority, "p-001")
    new = _snapshot(authority, "p-002", now=T0 + 1)
    device.ledger.apply(new, T0 + 2)
    before = _db_digest(device)
    with pytest.raises(ListRejected) as info:
        device.ledger.apply(old, T0 + 3)
    assert info.value.reason == "rollback"
    assert _db_digest(device) == before
    assert not device.ledger.allows("p-001", "face", PURPOSE, T0 + 3)


def test_same_version_other_content_is_a_replay(authority: Authority, device: Device) -> None:
    device.ledger.apply(_snapshot(authority, "p-001"), T0)
    forged_twin = sign_list(
        authority.signing_key(authority.load_state().active_kid),
        ConsentList(SITE, "snapshot", 1, int(T0), int(T0) + 3600, (entry("p-009"),)),
    )
    with pytest.raises(ListRejected) as info:
        device.ledger.apply(forged_twin, T0 + 1)
    assert info.value.reason == "replay"


def test_list_signed_by_another_key_is_rejected(authority: Authority, device: Device, tmp_path) -> None:
    rogue = Authority(tmp_path / "rogue")
    rogue.keygen(SITE)
    with pytest.raises(ListRejected) as info:
        device.ledger.apply(_snapshot(rogue, "p-666"), T0)
    assert info.value.reason == "unknown-key"
    # same key id as the pinned key but another key's signature
    kid = bytes.fromhex(authority.load_state().active_kid)
    body = cbor2.loads(cbor2.loads(_snapshot(authority, "p-001")).value[2])
    forged = sign1(SigningKey.generate(), kid, cbor2.dumps(body, canonical=True), b"gate-edge/consent-list")
    with pytest.raises(ListRejected) as info:
        device.ledger.apply(forged, T0)
    assert info.value.reason == "bad-signature"
    assert device.ledger.version is None


def test_wrong_site_expired_and_future_lists_are_rejected(authority: Authority, device: Device, tmp_path) -> None:
    key = authority.signing_key(authority.load_state().active_kid)
    other_site = sign_list(key, ConsentList("site-b", "snapshot", 1, int(T0), int(T0) + 3600, ()))
    with pytest.raises(ListRejected, match="wrong-site"):
        device.ledger.apply(other_site, T0)
    expired = sign_list(key, ConsentList(SITE, "snapshot", 1, int(T0) - 7200, int(T0) - 3600, ()))
    with pytest.raises(ListRejected, match="expired"):
        device.ledger.apply(expired, T0)
    future = sign_list(key, ConsentList(SITE, "snapshot", 1, int(T0) + 3600, int(T0) + 7200, ()))
    with pytest.raises(ListRejected, match="not-yet-valid"):
        device.ledger.apply(future, T0)
    assert device.ledger.version is None


def test_a_delta_applies_only_on_its_base(authority: Authority, device: Device) -> None:
    v1 = _snapshot(authority, "p-001", "p-002")
    delta_v2, _ = authority.withdraw("p-001", now=T0 + 1, delta=True)
    with pytest.raises(ListRejected, match="delta-base"):
        device.ledger.apply(delta_v2, T0 + 2)  # nothing held yet
    device.ledger.apply(v1, T0 + 2)
    outcome = device.ledger.apply(delta_v2, T0 + 3)
    assert outcome.kind == "delta"
    assert outcome.affected == {"p-001"}
    assert not device.ledger.allows("p-001", "face", PURPOSE, T0 + 3)
    assert device.ledger.allows("p-002", "face", PURPOSE, T0 + 3)
    # a delta for a base the device has moved past
    key = authority.signing_key(authority.load_state().active_kid)
    stale_delta = sign_list(
        key, ConsentList(SITE, "delta", 5, int(T0), int(T0) + 3600, (entry("p-003"),), base=1, remove=())
    )
    with pytest.raises(ListRejected, match="delta-base"):
        device.ledger.apply(stale_delta, T0 + 4)


def test_staleness_fails_closed_for_biometrics_only(authority: Authority, device: Device) -> None:
    message, _ = authority.issue({"p-001": entry("p-001", expires_at=None)}, now=T0, valid_for_s=3600)
    device.ledger.apply(message, T0)
    assert not device.ledger.is_stale(T0 + 3600 + 86400)
    assert device.ledger.is_stale(T0 + 3600 + 86400 + 1)
    assert not device.ledger.allows("p-001", "face", PURPOSE, T0 + 3600 + 86400 + 1)
    assert device.ledger.retains("p-001", "face", PURPOSE, T0 + 3600 + 86400 + 1)


def test_key_rotation_pins_the_successor_then_retires_the_old_key(authority: Authority, device: Device) -> None:
    old_kid = authority.load_state().active_kid
    new_kid = authority.rotate()
    announce, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    outcome = device.ledger.apply(announce, T0)
    assert outcome.pinned == (bytes.fromhex(new_kid),)
    assert (device.state.trust_dir / f"consent-authority-{new_kid}.pub").exists()
    authority.finish_rotation()
    switched, _ = authority.reissue(now=T0 + 1)
    assert cbor2.loads(switched).value[0] != cbor2.loads(announce).value[0]  # other kid in the header
    outcome = device.ledger.apply(switched, T0 + 1)
    assert outcome.retired == (bytes.fromhex(old_kid),)
    assert not (device.state.trust_dir / f"consent-authority-{old_kid}.pub").exists()
    # a list from the retired key is now refused
    rogue_old = sign_list(authority.signing_key(old_kid), ConsentList(SITE, "snapshot", 9, int(T0), int(T0) + 3600, ()))
    with pytest.raises(ListRejected, match="unknown-key"):
        device.ledger.apply(rogue_old, T0 + 2)


def test_a_list_cannot_retire_its_own_signing_key(authority: Authority, device: Device) -> None:
    key = authority.signing_key(authority.load_state().active_kid)
    from edge.consent.listformat import KeyAnnouncement

    suicidal = sign_list(
        key,
        ConsentList(
            SITE, "snapshot", 1, int(T0), int(T0) + 3600, (), keys=KeyAnnouncement((), (key_id(key.verify_key),))
        ),
    )
    with pytest.raises(ListRejected, match="bad-key-announcement"):
        device.ledger.apply(suicidal, T0)


def test_a_second_process_sees_a_list_applied_by_another(authority: Authority, device: Device) -> None:
    other = ConsentLedger.open(device.state, SITE, grace_period_s=60.0)
    try:
        device.ledger.apply(_snapshot(authority, "p-001"), T0)
        assert other.version is None
        assert other.reload_if_changed() is True
        assert other.allows("p-001", "face", PURPOSE, T0)
    finally:
        other.close()


def test_credential_lookup_needs_the_site_key_and_never_stores_values(
    authority: Authority, device: Device, tmp_path
) -> None:
    roster_file = tmp_path / "roster.csv"
    roster_file.write_text(
        "subject,purposes,modalities,status,card,pin\n"
        f"p-001,{PURPOSE},face,withdrawn,0004123456,\n"
        f"p-002,{PURPOSE},,active,,73190542\n"
    )
    message, _ = authority.issue(authority.read_roster(roster_file, now=T0), now=T0)
    device.ledger.apply(message, T0)
    assert device.ledger.credential_subject("card", "4123456", T0) == "p-001"  # leading zeros are not significant
    assert device.ledger.credential_subject("pin", "73190542", T0) == "p-002"
    assert device.ledger.credential_subject("pin", "73190543", T0) is None
    written = [p.read_bytes() for root in (device.state.root, authority.root) for p in root.rglob("*") if p.is_file()]
    for blob in [message, *written]:
        assert b"4123456" not in blob
        assert b"73190542" not in blob
    # a device without the site's credential key cannot check credentials (fails closed)
    bare = provision(tmp_path / "bare", authority)
    (bare.trust_dir / "consent-credential.key").unlink()
    ledger = ConsentLedger.open(bare, SITE, grace_period_s=60.0)
    try:
        ledger.apply(message, T0)
        assert ledger.credential_subject("card", "4123456", T0) is None
    finally:
        ledger.close()


def test_a_process_killed_mid_apply_leaves_the_last_good_list(authority: Authority, device: Device, tmp_path) -> None:
    """SIGKILL a process applying 1000-entry snapshots at a random moment: whatever version survives
    is complete, matches its signed message, and the next list applies on top of it."""
    import random
    import signal
    import subprocess
    import sys
    import time

    lists = []
    for i in range(6):
        roster = {f"q-{n:05d}": entry(f"q-{n:05d}") for n in range(i * 500, i * 500 + 1000)}
        message, _ = authority.issue(roster, now=T0 + i)
        path = tmp_path / f"v{i + 1}.cose"
        path.write_bytes(message)
        lists.append((path, set(roster)))
    device.ledger.close()
    script = (
        "import sys, pathlib\n"
        "from edge.consent.ledger import ConsentLedger\n"
        "from edge.state import StateDir\n"
        f"ledger = ConsentLedger.open(StateDir(pathlib.Path({str(device.state.root)!r})), {SITE!r}, grace_period_s=60)\n"
        "print('ready', flush=True)\n"
        "for p in sys.argv[1:]:\n"
        f"    ledger.apply(pathlib.Path(p).read_bytes(), {T0 + 10})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *(str(p) for p, _ in lists)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    ledger = device.reopen()
    version = ledger.version
    if version is not None:
        path, subjects = lists[version - 1]
        assert {e.subject for e in ledger.entries()} == subjects
        assert ledger.info is not None
        assert ledger.info.message == path.read_bytes()
    assert ledger.apply(lists[-1][0].read_bytes(), T0 + 11).version == 6 or version == 6


def test_subject_ids_never_reach_logs_or_exception_messages(
    authority: Authority, device: Device, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from edge.consent.enforce import Enforcer, EnrolmentRefused
    from edge.consent.teststores import MemoryStore
    from edge.events.sink import MemorySink

    caplog.set_level(logging.DEBUG)
    secret_ids = ("subj-alpha-7", "subj-bravo-9")
    store = MemoryStore("gallery", "face")
    enforcer = Enforcer(device.ledger, [store], MemorySink(), device.audit, purpose=PURPOSE)
    messages: list[str] = []
    v1 = _snapshot(authority, *secret_ids)
    enforcer.apply(v1, T0)
    enforcer.enrol(secret_ids[0], "face", T0, lambda: store.add(secret_ids[0], b"t"))
    try:
        enforcer.enrol(secret_ids[1], "fingerprint", T0 + 500 * 86400, lambda: None)
    except EnrolmentRefused as exc:
        messages.append(str(exc))
    v2, _ = authority.withdraw(secret_ids[0], now=T0 + 1, delta=True)
    enforcer.apply(v2, T0 + 1)
    for bad in (v1, v2[:-1], b"junk"):
        try:
            enforcer.apply(bad, T0 + 2)
        except ListRejected as exc:
            messages.append(str(exc))
    assert len(messages) == 4
    text = caplog.text + "\n".join(messages) + repr(device.ledger.entries()) + repr(enforcer.ledger.info)
    for subject in secret_ids:
        assert subject not in text
    assert store.subjects() == set()  # the withdrawal really happened while nothing was logged


def test_a_key_announcement_interrupted_by_a_crash_is_completed_at_open(authority: Authority, device: Device) -> None:
    new_kid = authority.rotate()
    announce, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    device.ledger.apply(announce, T0)
    pinned = device.state.trust_dir / f"consent-authority-{new_kid}.pub"
    assert pinned.exists()
    # simulate power loss after the list's transaction committed but before the key file was written
    pinned.unlink()
    device.ledger._conn.execute("UPDATE meta SET keys_done = 0")
    ledger = device.reopen()
    assert pinned.exists()
    assert ledger.version == 1
