"""Enforcement: enrolment gated on consent, purge on withdrawal/expiry/restart, signed receipts."""

from __future__ import annotations

from functools import partial

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.consent.authority import Authority
from edge.consent.enforce import BiometricStore, Enforcer, EnrolmentRefused
from edge.consent.teststores import MemoryStore, SqliteStore
from edge.crypto.cose import sign1
from edge.crypto.keys import key_id
from edge.events.sink import MemorySink
from edge.fingerprint.erasure import PendingErase
from tests.consent.consent_helpers import PURPOSE, T0, Device, entry


def _enforcer(device: Device, *stores: BiometricStore) -> tuple[Enforcer, MemorySink]:
    sink = MemorySink()
    return Enforcer(device.ledger, stores, sink, device.audit, purpose=PURPOSE), sink


def report_erased(enforcer: Enforcer, at: float, erased: list[PendingErase]) -> None:
    """The sensor thread's report that queued slots are erased: the receipts are signed then."""
    enforcer.erased(erased, at)


def test_both_test_stores_implement_the_protocol(tmp_path) -> None:
    sqlite_store = SqliteStore(tmp_path / "s.sqlite3", "sensor", "fingerprint")
    try:
        assert isinstance(MemoryStore("gallery", "face"), BiometricStore)
        assert isinstance(sqlite_store, BiometricStore)
    finally:
        sqlite_store.close()


def test_enrolment_needs_active_consent_for_that_modality(authority: Authority, device: Device) -> None:
    face = MemoryStore("gallery", "face")
    enforcer, _ = _enforcer(device, face)
    with pytest.raises(EnrolmentRefused, match="stale"):  # no list at all: fail closed
        enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"t"))
    message, _ = authority.issue({"p-001": entry("p-001", ("fingerprint",))}, now=T0)
    enforcer.apply(message, T0)
    with pytest.raises(EnrolmentRefused, match="no active consent"):
        enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"t"))
    assert face.subjects() == set()
    message, _ = authority.issue({"p-001": entry("p-001", ("face",))}, now=T0 + 1)
    enforcer.apply(message, T0 + 1)
    enforcer.enrol("p-001", "face", T0 + 1, lambda: face.add("p-001", b"t"))
    assert face.subjects() == {"p-001"}
    kinds = [r.kind for r in device.audit.records()]
    assert kinds.count("enrolment_refused") == 2
    assert kinds.count("enrolment") == 1


def test_withdrawal_purges_every_store_and_emits_a_receipt(authority: Authority, device: Device, tmp_path) -> None:
    face = MemoryStore("gallery", "face")
    finger = SqliteStore(tmp_path / "finger.sqlite3", "sensor", "fingerprint")
    try:
        enforcer, sink = _enforcer(device, face, finger)
        message, _ = authority.issue({s: entry(s) for s in ("p-001", "p-002")}, now=T0)
        enforcer.apply(message, T0)
        for subject in ("p-001", "p-002"):
            for _ in range(3):
                enforcer.enrol(subject, "face", T0, partial(face.add, subject, b"x" * 64))
            enforcer.enrol(subject, "fingerprint", T0, partial(finger.add, subject, b"y" * 64))
        withdrawal, _ = authority.withdraw("p-001", now=T0 + 10, delta=True)
        enforcer.apply(withdrawal, T0 + 10)
        assert face.subjects() == {"p-002"}
        assert finger.subjects() == {"p-002"}
        (receipt,) = sink.of_kind("deletion_receipt")
        assert receipt["subject"] == "p-001"
        assert receipt["reason"] == "withdrawn"
        assert receipt["consent_version"] == 2
        assert receipt["deleted_at"] == int(T0 + 10)
        assert receipt["deleted"] == ["face", "fingerprint"]
        assert receipt["records"] == 3 + 1 + 1  # as the stores reported: 3 templates; 1 template and its slot
        # what each store deleted, in the enforcer's words, is the audit record's
        (audited,) = [r for r in device.audit.records() if r.kind == "deletion"]
        deleted = audited.details["deleted"]
        assert isinstance(deleted, dict)
        assert deleted["gallery"] == {"templates": 3}
        assert deleted["sensor"] == {"templates": 1, "slots": [1]}
        assert (audited.details["reason"], audited.details["list_version"]) == ("withdrawn", 2)
        # withdrawn people cannot be matched any more; the others can
        assert not enforcer.ledger.allows("p-001", "face", PURPOSE, T0 + 11)
        assert enforcer.ledger.allows("p-002", "face", PURPOSE, T0 + 11)
    finally:
        finger.close()


def test_expiry_is_enforced_by_the_timer_and_restart_reconciles(authority: Authority, device: Device) -> None:
    face = MemoryStore("gallery", "face")
    enforcer, _sink = _enforcer(device, face)
    message, _ = authority.issue({"p-001": entry("p-001", expires_at=int(T0) + 60)}, now=T0)
    enforcer.apply(message, T0)
    enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"t"))
    assert enforcer.tick(T0 + 59) == []
    assert face.subjects() == {"p-001"}
    (receipt,) = enforcer.tick(T0 + 60)
    assert receipt.reason == "expired"
    assert face.subjects() == set()
    # templates left by a crash (or a store restored from backup) are purged at start-up
    face.add("p-404", b"t")
    restarted, _ = _enforcer(device, face)
    (receipt,) = restarted.startup(T0 + 61)
    assert receipt.reason == "not-in-list"
    assert receipt.receipt().reason == "not_listed"
    assert face.subjects() == set()


def test_stale_list_raises_one_alarm_and_stops_matching_without_deleting(authority: Authority, device: Device) -> None:
    face = MemoryStore("gallery", "face")
    enforcer, sink = _enforcer(device, face)
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0, valid_for_s=3600)
    enforcer.apply(message, T0)
    enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"t"))
    late = T0 + 3600 + device.ledger.grace_period_s + 1
    enforcer.tick(late)
    enforcer.tick(late + 1)
    alarms = sink.of_kind("alarm")
    assert len(alarms) == 1
    # the one name (the gate raised its own before)
    assert alarms[0] == {"code": "consent_stale", "severity": "warning", "state": "raised", "component": "consent"}
    assert not enforcer.ledger.allows("p-001", "face", PURPOSE, late)
    assert face.subjects() == {"p-001"}  # staleness stops use, not retention
    fresh, _ = authority.reissue(now=late)
    enforcer.apply(fresh, late + 2)
    assert sink.of_kind("alarm")[-1]["state"] == "cleared"
    assert enforcer.ledger.allows("p-001", "face", PURPOSE, late + 2)


def test_deletion_receipt_verifies_with_pycose(authority: Authority, device: Device) -> None:
    """The receipt body, signed with the device key as COSE_Sign1, verifies with pycose.

    (The agent signs it through the event envelope; here it is signed directly with our codec.)
    """
    from tests.pycose_reference import pycose_payload, pycose_verifies

    face = MemoryStore("gallery", "face")
    enforcer, sink = _enforcer(device, face)
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    enforcer.apply(message, T0)
    enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"t"))
    withdrawal, _ = authority.withdraw("p-001", now=T0 + 1)
    enforcer.apply(withdrawal, T0 + 1)
    (body,) = sink.of_kind("deletion_receipt")
    device_key: SigningKey = device.key
    payload = cbor2.dumps(body, canonical=True)
    topic = b"sites/site-a/gates/gate-1/events"
    signed = sign1(device_key, key_id(device_key.verify_key), payload, topic)

    public = bytes(device_key.verify_key)
    assert cbor2.loads(pycose_payload(signed, public, topic)) == body
    # and a receipt altered after signing does not verify
    tampered = cbor2.dumps({**body, "consent_version": 1}, canonical=True)
    assert not pycose_verifies(signed, public, topic, payload=tampered)


def test_a_list_applied_by_another_process_is_purged_for_even_if_the_next_delivery_is_rejected(
    authority: Authority, device: Device
) -> None:
    from edge.consent.ledger import ConsentLedger, ListRejected

    face = MemoryStore("gallery", "face")
    enforcer, sink = _enforcer(device, face)
    v1, _ = authority.issue({s: entry(s) for s in ("p-001", "p-002")}, now=T0)
    enforcer.apply(v1, T0)
    for subject in ("p-001", "p-002"):
        enforcer.enrol(subject, "face", T0, partial(face.add, subject, b"t"))
    v2, _ = authority.withdraw("p-001", now=T0 + 1)
    other = ConsentLedger.open(device.state, device.ledger.site, grace_period_s=60)  # `edge consent apply`
    try:
        other.apply(v2, T0 + 1)
    finally:
        other.close()
    with pytest.raises(ListRejected, match="rollback"):
        enforcer.apply(v1, T0 + 2)  # the retained topic still holds v1
    assert face.subjects() == {"p-002"}
    assert [r["subject"] for r in sink.of_kind("deletion_receipt")] == ["p-001"]
    # and an enrolment after another process's change first catches up
    v3, _ = authority.withdraw("p-002", now=T0 + 3)
    other = ConsentLedger.open(device.state, device.ledger.site, grace_period_s=60)
    try:
        other.apply(v3, T0 + 3)
    finally:
        other.close()
    with pytest.raises(EnrolmentRefused):
        enforcer.enrol("p-002", "face", T0 + 4, lambda: face.add("p-002", b"t"))
    assert face.subjects() == set()


def test_a_sensor_slot_is_receipted_only_once_the_sensor_has_erased_it(authority: Authority, device: Device) -> None:
    """The fingerprint store used to report its slots as deleted at once, so the enforcer signed a
    receipt naming ``fingerprint`` while the template was still in the (unplugged) sensor. Tried: a
    withdrawal of a subject with a face and a sensor slot, the erase failing, then succeeding."""
    from edge.fingerprint.erasure import EraseQueue
    from edge.gallery.stores import FingerprintStore

    class Records:
        """The gallery calls FingerprintStore makes."""

        def __init__(self) -> None:
            self.slots = {4: "p-001", 7: "p-002"}

        def subjects(self, modality: str | None = None) -> set[str]:
            return set(self.slots.values())

        def slots_of(self, subject: str) -> list[int]:
            return sorted(s for s, who in self.slots.items() if who == subject)

        def delete_subject(self, subject: str, modality: str | None = None) -> None:
            self.slots = {s: who for s, who in self.slots.items() if who != subject}

    face = MemoryStore("gallery", "face")
    queue = EraseQueue()
    enforcer, sink = _enforcer(device, face, FingerprintStore(Records(), queue))  # type: ignore[arg-type]
    message, _ = authority.issue({s: entry(s) for s in ("p-001", "p-002")}, now=T0)
    enforcer.apply(message, T0)
    enforcer.enrol("p-001", "face", T0, lambda: face.add("p-001", b"x" * 64))
    message, _ = authority.issue({"p-002": entry("p-002")}, now=T0 + 1)
    enforcer.apply(message, T0 + 1)
    receipts = sink.of_kind("deletion_receipt")
    assert [(r["subject"], r["deleted"]) for r in receipts] == [("p-001", ["face"])]
    assert queue.slots() == [4]

    def unplugged(slot: int) -> None:
        raise OSError("sensor unplugged")

    with pytest.raises(OSError):
        queue.drain(unplugged, partial(report_erased, enforcer, T0 + 2))
    assert len(sink.of_kind("deletion_receipt")) == 1  # nothing erased, nothing claimed
    assert queue.drain(lambda slot: None, partial(report_erased, enforcer, T0 + 3)) == 1
    late = sink.of_kind("deletion_receipt")[-1]
    assert late["subject"] == "p-001"
    assert (late["deleted"], late["records"]) == (["fingerprint"], 1)
    assert late["reason"] == "not_listed"
    assert late["consent_version"] == 2
    deletions = [r for r in device.audit.records() if r.kind == "deletion"]
    assert [sorted(r.details["deleted"]) for r in deletions] == [["gallery"], ["fingerprint"]]
    assert deletions[-1].details["deleted"] == {
        "fingerprint": {"templates": 0, "slots": [4], "modalities": ["fingerprint"]}
    }
    assert (deletions[-1].details["reason"], deletions[-1].details["list_version"]) == ("not-in-list", 2)


def test_a_gate_holds_and_matches_only_people_whose_scope_covers_it(authority: Authority, device: Device) -> None:
    """Issue 14: consent scoped to zones. The gate stands in `lobby`; p-001's consent covers the
    lobby, p-002's only the car park, p-003's the whole site, p-004's names this gate by id. Then
    p-001's scope moves to the car park: the gate deletes p-001's templates with a receipt. The
    card path is not scoped: p-002's card still resolves at this gate."""
    from edge.consent.ledger import ConsentLedger
    from edge.consent.listformat import CredentialGrant, Gate
    from edge.credentials.hashing import credential_digest
    from edge.crypto.keys import device_id

    me, other = SigningKey(b"\x01" * 32).verify_key, SigningKey(b"\x02" * 32).verify_key
    here = device_id(me)
    device.ledger.close()
    device.ledger = ConsentLedger.open(device.state, "site-a", grace_period_s=86400.0, audit=device.audit, device=here)
    authority.set_gates(
        [
            Gate(here, bytes(me), None, frozenset({"lobby"})),
            Gate(device_id(other), bytes(other), None, frozenset({"car-park"})),
        ]
    )
    face = MemoryStore("gallery", "face")
    enforcer, sink = _enforcer(device, face)
    entries = {
        "p-001": entry("p-001", ("face",), scope=["lobby"]),
        "p-002": entry(
            "p-002",
            ("face",),
            scope=["car-park"],
            credentials=[CredentialGrant("card", credential_digest(authority.credential_key(), "card", "0004123456"))],
        ),
        "p-003": entry("p-003", ("face",)),
        "p-004": entry("p-004", ("face",), scope=[here]),
    }
    message, _ = authority.issue(entries, now=T0)
    enforcer.apply(message, T0)
    for subject in ("p-001", "p-003", "p-004"):
        enforcer.enrol(subject, "face", T0, partial(face.add, subject, b"t"))
    with pytest.raises(EnrolmentRefused, match="no active consent"):
        enforcer.enrol("p-002", "face", T0, lambda: face.add("p-002", b"t"))
    assert face.subjects() == {"p-001", "p-003", "p-004"}
    assert not device.ledger.allows("p-002", "face", PURPOSE, T0)
    assert device.ledger.credential_subject("card", "0004123456", T0) == "p-002"
    moved = dict(entries, **{"p-001": entry("p-001", ("face",), scope=["car-park"])})
    message, _ = authority.issue(moved, now=T0 + 5)
    enforcer.apply(message, T0 + 5)
    assert face.subjects() == {"p-003", "p-004"}
    (receipt,) = sink.of_kind("deletion_receipt")
    assert receipt["subject"] == "p-001"
    assert receipt["reason"] == "out_of_scope"  # the templates left this gate; the consent stands elsewhere
    (audited,) = [r for r in device.audit.records() if r.kind == "deletion"]
    assert audited.details["reason"] == "out-of-scope"
    assert not device.ledger.allows("p-001", "face", PURPOSE, T0 + 6)


def test_moving_the_gate_to_another_zone_deletes_whom_the_new_zone_does_not_cover(
    authority: Authority, device: Device
) -> None:
    """Issue 14: the site decides where a gate stands (the signed roster). A list that changes
    only the roster (no entry changes) still makes the gate re-check everyone: p-001 (lobby) goes
    when the gate moves to the car park; p-002 (car park) may then enrol; p-003 (whole site) stays."""
    from edge.consent.ledger import ConsentLedger
    from edge.consent.listformat import Gate
    from edge.crypto.keys import device_id

    me = SigningKey(b"\x01" * 32).verify_key
    here = device_id(me)
    device.ledger.close()
    device.ledger = ConsentLedger.open(device.state, "site-a", grace_period_s=86400.0, audit=device.audit, device=here)
    face = MemoryStore("gallery", "face")
    enforcer, sink = _enforcer(device, face)
    entries = {
        "p-001": entry("p-001", ("face",), scope=["lobby"]),
        "p-002": entry("p-002", ("face",), scope=["car-park"]),
        "p-003": entry("p-003", ("face",)),
    }
    authority.set_gates([Gate(here, bytes(me), None, frozenset({"lobby"}))])
    enforcer.apply(authority.issue(entries, now=T0)[0], T0)
    for subject in ("p-001", "p-003"):
        enforcer.enrol(subject, "face", T0, partial(face.add, subject, b"t"))
    authority.set_gates([Gate(here, bytes(me), None, frozenset({"car-park"}))])
    outcome = enforcer.apply(authority.issue(entries, now=T0 + 5)[0], T0 + 5)
    assert outcome.changed
    assert device.ledger.place.zones == frozenset({"car-park"})
    assert face.subjects() == {"p-003"}
    assert [r["subject"] for r in sink.of_kind("deletion_receipt")] == ["p-001"]
    enforcer.enrol("p-002", "face", T0 + 6, lambda: face.add("p-002", b"t"))
    # a gate the roster does not list stands in no zone: only whole-site consent applies there
    authority.set_gates([])
    enforcer.apply(authority.issue(entries, now=T0 + 10)[0], T0 + 10)
    assert face.subjects() == {"p-003"}
