"""Consent on a failing disk: a deletion, its audit record and its receipt are one unit of work, and a
list is never in force without its ``consent_applied`` record, once the disk takes writes again.

The real stores throughout: the encrypted gallery, the SQLite audit log, ledger and outbox, the
signed sink. Faults are injected at each store's write boundary (``edge.state_faults``: the error
SQLite or the kernel gives on ENOSPC/EROFS); damaged files are real files with bytes overwritten.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cbor2
import numpy as np
import pytest

from edge import state_faults
from edge.audit.log import AuditLog
from edge.consent.authority import Authority
from edge.consent.enforce import Enforcer
from edge.consent.journal import DeletionJournal
from edge.consent.ledger import ConsentLedger
from edge.crypto.keys import device_id
from edge.errors import StoreDamaged
from edge.events.envelope import EventSigner, decode_payload
from edge.events.outbox_sink import OutboxSink
from edge.gallery.store import Gallery
from edge.gallery.stores import FaceStore
from edge.state_recovery import set_aside_files
from edge.transport.outbox import Outbox
from tests.consent.consent_helpers import PURPOSE, SITE, T0, Device, entry


@dataclass
class Rig:
    device: Device
    gallery: Gallery
    outbox: Outbox
    enforcer: Enforcer

    def receipts(self) -> list[dict[str, object]]:
        out = []
        for e in self.outbox.pending(limit=1000):
            claims = decode_payload(cbor2.loads(e.payload).value[2])
            if claims.kind == "deletion_receipt":
                out.append(claims.body)
        return out

    def audit_kinds(self, kind: str) -> list[dict[str, object]]:
        return [r.details for r in self.device.audit.records() if r.kind == kind]

    def restart(self) -> Rig:
        """A new enforcer on the same files, as after a crash (the journal is read back)."""
        self.outbox.close()
        outbox = Outbox(self.device.state.outbox_db)
        sink = OutboxSink(EventSigner(self.device.key, device_id(self.device.key.verify_key), outbox), outbox, SITE)
        enforcer = Enforcer(
            self.device.ledger,
            [FaceStore(self.gallery)],
            sink,
            self.device.audit,
            purpose=PURPOSE,
            journal=DeletionJournal(self.device.state.root / "deletions.json"),
        )
        return Rig(self.device, self.gallery, outbox, enforcer)


@pytest.fixture
def rig(authority: Authority, device: Device) -> Iterator[Rig]:
    gallery = Gallery.open(device.state, create_key=True)
    outbox = Outbox(device.state.outbox_db)
    sink = OutboxSink(EventSigner(device.key, device_id(device.key.verify_key), outbox), outbox, SITE)
    enforcer = Enforcer(
        device.ledger,
        [FaceStore(gallery)],
        sink,
        device.audit,
        purpose=PURPOSE,
        journal=DeletionJournal(device.state.root / "deletions.json"),
    )
    message, _ = authority.issue({s: entry(s) for s in ("p-001", "p-002")}, now=T0)
    enforcer.apply(message, T0)
    rng = np.random.default_rng(5)
    for subject in ("p-001", "p-002"):
        vec = rng.standard_normal(128).astype(np.float32)
        enforcer.enrol(subject, "face", T0, partial(gallery.enrol, subject, "face", templates=[vec]))
    made = Rig(device, gallery, outbox, enforcer)
    yield made
    made.outbox.close()
    gallery.close()


def _withdraw(authority: Authority, rig: Rig, at: float) -> None:
    message, _ = authority.issue({"p-001": entry("p-001", status="withdrawn"), "p-002": entry("p-002")}, now=at)
    rig.enforcer.apply(message, at)


def test_audit_and_outbox_full_during_a_withdrawal_the_unit_completes_when_space_returns(
    authority: Authority, rig: Rig
) -> None:
    with state_faults.inject("full", "audit.sqlite3", "outbox.sqlite3"):
        _withdraw(authority, rig, T0 + 10)  # in force; its own consent_applied record is owed too
        rig.enforcer.tick(T0 + 11)
        rig.enforcer.tick(T0 + 12)
        # the templates are gone (the gallery took the delete) but the unit is open: no receipt yet
        assert rig.gallery.subjects("face") == {"p-002"}
        assert rig.enforcer.pending_deletions == 1
        assert rig.receipts() == []
    assert rig.enforcer.tick(T0 + 13)  # space is back: audit record and receipt follow
    assert rig.enforcer.pending_deletions == 0
    (receipt,) = rig.receipts()
    assert receipt["subject"] == "p-001"
    assert receipt["reason"] == "withdrawn"
    assert receipt["records"] == 1
    (record,) = rig.audit_kinds("deletion")
    assert record["subject"] == "p-001"
    assert record["deleted"] == {"face": {"templates": 1, "slots": [], "modalities": ["face"]}}
    # and the list that was committed while the audit log was full has its record too
    applied = [d["version"] for d in rig.audit_kinds("consent_applied")]
    assert applied == [1, 2]


def test_a_disk_that_refuses_even_the_journal_deletes_nothing_until_it_can_receipt(
    authority: Authority, rig: Rig
) -> None:
    _withdraw(authority, rig, T0 + 10)  # applied and purged normally: p-001 is gone with a receipt
    message, _ = authority.issue(
        {"p-001": entry("p-001", status="withdrawn"), "p-002": entry("p-002", status="withdrawn")}, now=T0 + 20
    )
    rig.device.ledger.apply(message, T0 + 20)  # the new list comes in through another process
    with state_faults.inject("full"):  # every store and state file refuses writes
        rig.enforcer.tick(T0 + 21)
        assert rig.gallery.subjects("face") == {"p-002"}, "no deletion may happen without its journal entry"
        assert not rig.device.ledger.allows("p-002", "face", PURPOSE, T0 + 21), "yet it is never matched"
    rig.enforcer.tick(T0 + 22)
    assert rig.gallery.subjects("face") == set()
    assert sorted(str(r["subject"]) for r in rig.receipts()) == ["p-001", "p-002"]
    assert sorted(str(d["subject"]) for d in rig.audit_kinds("deletion")) == ["p-001", "p-002"]


def test_a_receipt_the_outbox_cannot_commit_keeps_the_unit_open_and_the_audit_record_is_not_repeated(
    authority: Authority, rig: Rig
) -> None:
    with state_faults.inject("full", "outbox.sqlite3"):
        _withdraw(authority, rig, T0 + 10)
        rig.enforcer.tick(T0 + 11)
        assert rig.enforcer.pending_deletions == 1
        assert len(rig.audit_kinds("deletion")) == 1  # written once, already
    rig.enforcer.tick(T0 + 12)
    assert rig.enforcer.pending_deletions == 0
    assert [r["subject"] for r in rig.receipts()] == ["p-001"]
    assert len(rig.audit_kinds("deletion")) == 1


def test_a_crash_after_the_audit_record_redrives_to_one_receipt_and_one_record(authority: Authority, rig: Rig) -> None:
    with state_faults.inject("full", "outbox.sqlite3"):
        _withdraw(authority, rig, T0 + 10)
    # the process dies here: the journal on disk says deleted and audited, receipt owed
    again = rig.restart()
    assert again.enforcer.pending_deletions == 1
    again.enforcer.tick(T0 + 30)
    assert [r["subject"] for r in again.receipts()] == ["p-001"]
    assert len(again.audit_kinds("deletion")) == 1
    assert not (rig.device.state.root / "deletions.json").read_text().count("p-001")


def test_consent_apply_retried_after_space_returns_completes_the_missing_record(
    authority: Authority, device: Device
) -> None:
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    with state_faults.inject("full", "audit.sqlite3"):
        outcome = device.ledger.apply(message, T0)
    assert outcome.changed
    assert outcome.audit_pending, "in force, but its record is owed"
    assert [r.kind for r in device.audit.records()] == []
    # `edge consent apply` run again with the same file: "already in force", and the record is written
    again = device.ledger.apply(message, T0 + 5)
    assert not again.changed
    assert again.audit_completed
    assert [(r.kind, r.details["version"]) for r in device.audit.records()] == [("consent_applied", 1)]
    device.ledger.apply(message, T0 + 6)
    assert len(device.audit.records()) == 1, "never twice"


def test_another_process_left_the_record_pending_and_the_agents_tick_writes_it(
    authority: Authority, device: Device
) -> None:
    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    other_audit = AuditLog.open(device.state.audit_db, device.key)
    other = ConsentLedger.open(device.state, SITE, grace_period_s=86400.0, audit=other_audit)
    with state_faults.inject("full", "audit.sqlite3"):
        assert other.apply(message, T0).audit_pending
    other.close()
    other_audit.close()
    device.ledger.reload_if_changed()  # the agent's enforcer calls this every second
    device.ledger.reload_if_changed()
    assert [r.kind for r in device.audit.records()] == ["consent_applied"]


def _scribble(path: Path, table: str) -> None:
    db = sqlite3.connect(path)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    start = (int(root) - 1) * int(size)
    data[start : start + int(size)] = bytes((i * 73 + 11) % 256 for i in range(int(size)))
    path.write_bytes(bytes(data))


def test_a_damaged_ledger_is_set_aside_and_its_last_list_applied_again(authority: Authority, device: Device) -> None:
    from edge.consent.listformat import CredentialGrant
    from edge.credentials.hashing import credential_digest

    card = CredentialGrant("card", credential_digest(authority.credential_key(), "card", "4242"))
    message, _ = authority.issue({"p-001": entry("p-001", credentials=[card])}, now=T0)
    device.ledger.apply(message, T0)
    device.ledger.close()
    _scribble(device.state.consent_db, "entries")  # the entries page; meta (the signed list) survives
    with pytest.raises(StoreDamaged, match=r"consent ledger .* is damaged"):
        ConsentLedger.open(device.state, SITE, grace_period_s=86400.0)
    device.ledger = ConsentLedger.open_or_replace(device.state, SITE, grace_period_s=86400.0, audit=device.audit)
    assert device.ledger.version == 1
    assert device.ledger.credential_subject("card", "4242", T0 + 1) == "p-001", "the card path works again"
    (aside,) = set_aside_files(device.state.root)
    assert (aside.store, aside.salvaged) == ("consent", 1)


def test_a_ledger_that_is_not_a_database_starts_empty_and_nothing_is_purged_for_want_of_a_list(
    authority: Authority, device: Device
) -> None:
    from edge.consent.teststores import MemoryStore
    from edge.events.sink import MemorySink

    message, _ = authority.issue({"p-001": entry("p-001")}, now=T0)
    device.ledger.apply(message, T0)
    device.ledger.close()
    device.state.consent_db.write_bytes(b"not a database " * 300)
    for extra in ("-wal", "-shm"):
        Path(str(device.state.consent_db) + extra).unlink(missing_ok=True)
    device.ledger = ConsentLedger.open_or_replace(device.state, SITE, grace_period_s=86400.0, audit=device.audit)
    assert device.ledger.version is None
    assert device.ledger.is_stale(T0), "no list: biometrics fail closed"
    face = MemoryStore("gallery", "face")
    face.add("p-001", b"t")
    enforcer = Enforcer(device.ledger, [face], MemorySink(), device.audit, purpose=PURPOSE)
    assert enforcer.startup(T0) == []
    assert face.subjects() == {"p-001"}, "a damaged ledger must not wipe the gallery"
    enforcer.apply(message, T0 + 1)  # the retained list arrives
    assert device.ledger.version == 1


def test_a_damaged_audit_log_starts_a_new_chain_naming_a_verifiable_archive(device: Device) -> None:
    for i in range(5):
        device.audit.append("consent_rejected", {"reason": "replay", "version_in_force": i})
    device.audit.close()
    _scribble(device.state.audit_db, "head")  # the head page; the records survive
    with pytest.raises(StoreDamaged, match=r"audit log .* is damaged"):
        AuditLog.open(device.state.audit_db, device.key)
    device.audit = AuditLog.open_or_replace(device.state.audit_db, device.key)
    (first,) = device.audit.records()
    assert first.kind == "audit_chain_started"
    assert first.details["reason"] == "damaged"
    assert first.details["salvaged"] == 5
    assert str(first.details["archive"]).startswith("audit.sqlite3.damaged-")
    device.audit.verify()
    (aside,) = set_aside_files(device.state.root)
    assert aside.store == "audit"
    assert (device.state.root / aside.aside).exists()
    device.ledger.audit = device.audit


def test_an_unreadable_deletion_journal_is_set_aside_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "deletions.json"
    path.write_bytes(b'{"version": 1, "pending": [{"subject": 7')  # cut off mid-write by a dying SD card
    journal = DeletionJournal(path)
    assert len(journal) == 0
    assert journal.set_aside is not None
    assert journal.set_aside.exists()
    assert not path.exists()
