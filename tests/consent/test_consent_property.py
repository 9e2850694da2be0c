"""Property: random interleavings of grants, withdrawals, removals, expiries, enrolments, matches,
restarts and list deliveries (in order, out of order, replayed, via another process) never leave a
template, nor report a match, for a subject without active consent.

The machine keeps its own model of what the device should hold (the list versions it must accept
and the entries they carry) and checks the real ledger, enforcer and SQLite stores against it after
every step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from nacl.signing import SigningKey

from edge.audit.log import AuditLog
from edge.consent.authority import Authority
from edge.consent.enforce import Enforcer, EnrolmentRefused
from edge.consent.ledger import ConsentLedger, ListRejected
from edge.consent.listformat import Entry
from edge.consent.teststores import SqliteStore
from edge.events.sink import MemorySink
from tests.consent.consent_helpers import PURPOSE, SITE, provision

SUBJECTS = ("s-0", "s-1", "s-2", "s-3")
MODALITIES = ("face", "fingerprint")
VALID_FOR = 2 * 86400
GRACE = 86400.0
T_START = 1_800_000_000


class Issued:
    def __init__(self, message: bytes, version: int, kind: str, base: int | None, roster: dict[str, Entry], at: int):
        self.message = message
        self.version = version
        self.kind = kind
        self.base = base
        self.roster = roster
        self.issued_at = at
        self.valid_until = at + VALID_FOR


class ConsentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="consent-prop-")
        root = Path(self.tmp.name)
        self.now = T_START
        self.authority = Authority(root / "authority")
        self.authority.keygen(SITE)
        self.state = provision(root / "device", self.authority)
        self.audit = AuditLog.open(self.state.audit_db, SigningKey.generate(), synchronous="NORMAL")
        self.sink = MemorySink()
        self.issued: list[Issued] = []
        # the model of the device
        self.dev_version: int | None = None
        self.dev_roster: dict[str, Entry] = {}
        self.dev_valid_until: int | None = None
        self.templates = 0
        self._open()

    def _open(self) -> None:
        self.ledger = ConsentLedger.open(self.state, SITE, grace_period_s=GRACE, audit=self.audit)
        self.stores = [
            SqliteStore(self.state.root / "face.sqlite3", "gallery", "face"),
            SqliteStore(self.state.root / "finger.sqlite3", "sensor", "fingerprint"),
        ]
        self.enforcer = Enforcer(self.ledger, self.stores, self.sink, self.audit, purpose=PURPOSE)
        self.enforcer.startup(self.now)

    def _close(self) -> None:
        self.ledger.close()
        for store in self.stores:
            store.close()

    def teardown(self) -> None:
        self._close()
        self.audit.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ model helpers

    def _stale(self) -> bool:
        return self.dev_valid_until is None or self.now > self.dev_valid_until + GRACE

    def _active(self, subject: str, modality: str) -> bool:
        entry = self.dev_roster.get(subject)
        return entry is not None and entry.allows(modality, PURPOSE, self.now)

    def _expect_accept(self, item: Issued) -> bool | None:
        """True: applied; None: no-op redelivery; False: rejected."""
        if self.dev_version is not None and item.version == self.dev_version:
            return None
        if self.now >= item.valid_until:
            return False
        if self.dev_version is not None and item.version < self.dev_version:
            return False
        if item.kind == "delta":
            return self.dev_version == item.base
        return True

    def _issue(
        self, roster: dict[str, Entry], delta: bool, upserts: list[Entry], remove: list[str], deliver: bool
    ) -> None:
        if delta:
            message, _ = self.authority.issue_delta(upserts, remove, now=self.now, valid_for_s=VALID_FOR)
            base: int | None = self.authority.load_state().version - 1
        else:
            message, _ = self.authority.issue(roster, now=self.now, valid_for_s=VALID_FOR)
            base = None
        version = self.authority.load_state().version
        assert self.authority.load_state().entries == roster
        self.issued.append(Issued(message, version, "delta" if delta else "snapshot", base, dict(roster), self.now))
        if deliver:  # the usual case: the retained topic delivers it at once
            self._deliver(len(self.issued) - 1, False)

    # ------------------------------------------------------------------ authority rules

    @initialize(enrol=st.sets(st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(MODALITIES))))
    def populated(self, enrol: set[tuple[str, str]]) -> None:
        """Start from a delivered list granting everyone both modalities, and some enrolments."""
        roster = {s: Entry(s, frozenset({PURPOSE}), frozenset(MODALITIES), self.now, None, "active") for s in SUBJECTS}
        self._issue(roster, False, [], [], True)
        for subject, modality in sorted(enrol):
            self.enrol(subject, modality)

    @rule(
        subject=st.sampled_from(SUBJECTS),
        modalities=st.sets(st.sampled_from(MODALITIES), min_size=1),
        duration=st.one_of(st.none(), st.integers(60, 4 * 3600)),
        delta=st.booleans(),
        deliver=st.booleans(),
    )
    def grant(self, subject: str, modalities: set[str], duration: int | None, delta: bool, deliver: bool) -> None:
        roster = dict(self.authority.load_state().entries)
        entry = Entry(
            subject,
            frozenset({PURPOSE}),
            frozenset(modalities),
            self.now,
            None if duration is None else self.now + duration,
            "active",
        )
        roster[subject] = entry
        self._issue(roster, delta, [entry], [], deliver)

    @rule(subject=st.sampled_from(SUBJECTS), delta=st.booleans(), deliver=st.booleans())
    def withdraw(self, subject: str, delta: bool, deliver: bool) -> None:
        roster = dict(self.authority.load_state().entries)
        old = roster.get(subject)
        if old is None:
            return
        entry = Entry(subject, old.purposes, old.modalities, old.granted_at, old.expires_at, "withdrawn")
        roster[subject] = entry
        self._issue(roster, delta, [entry], [], deliver)

    @rule(subject=st.sampled_from(SUBJECTS), delta=st.booleans(), deliver=st.booleans())
    def remove(self, subject: str, delta: bool, deliver: bool) -> None:
        roster = dict(self.authority.load_state().entries)
        if roster.pop(subject, None) is None:
            return
        self._issue(roster, delta, [], [subject], deliver)

    # ------------------------------------------------------------------ device rules

    def _deliver(self, index: int, via_other_process: bool) -> None:
        item = self.issued[index % len(self.issued)]
        expected = self._expect_accept(item)
        if via_other_process:  # `edge consent apply FILE` beside the running agent
            other = ConsentLedger.open(self.state, SITE, grace_period_s=GRACE, audit=self.audit)
            try:
                applied = other.apply(item.message, self.now).changed
            except ListRejected:
                applied = False
            finally:
                other.close()
            self.enforcer.tick(self.now)
        else:
            try:
                applied = self.enforcer.apply(item.message, self.now).changed
            except ListRejected:
                applied = False
        assert applied == bool(expected), (expected, item.kind, item.version, self.dev_version)
        event(f"delivery {item.kind}: {'applied' if applied else 'rejected or no-op'}")
        if expected:
            self.dev_version = item.version
            self.dev_roster = item.roster
            self.dev_valid_until = item.valid_until

    @precondition(lambda self: self.issued)
    @rule(index=st.integers(0, 1000), via_other_process=st.booleans())
    def deliver(self, index: int, via_other_process: bool) -> None:
        self._deliver(index, via_other_process)

    @precondition(lambda self: self.issued)
    @rule()
    def deliver_latest(self) -> None:
        self._deliver(len(self.issued) - 1, False)

    @rule(subject=st.sampled_from(SUBJECTS), modality=st.sampled_from(MODALITIES))
    def enrol(self, subject: str, modality: str) -> None:
        store = self.stores[MODALITIES.index(modality)]
        expected = self._active(subject, modality) and not self._stale()
        try:
            self.enforcer.enrol(subject, modality, self.now, lambda: store.add(subject, b"\x00opaque-template"))
            enrolled = True
        except EnrolmentRefused:
            enrolled = False
        assert enrolled == expected
        event(f"enrolment {'done' if enrolled else 'refused'}")

    @rule(subject=st.sampled_from(SUBJECTS), modality=st.sampled_from(MODALITIES))
    def match(self, subject: str, modality: str) -> None:
        store = self.stores[MODALITIES.index(modality)]
        candidate = subject if subject in store.subjects() else None  # what a matcher could propose
        # what the gate reports: the ledger's answer for the enforcer's purpose (fail closed when stale)
        allowed = candidate is not None and self.enforcer.ledger.allows(
            candidate, modality, self.enforcer.purpose, self.now
        )
        reported = candidate if allowed else None
        if reported is not None:
            assert self._active(reported, modality)
            assert not self._stale()

    @rule()
    def restart(self) -> None:
        self._close()
        self._open()

    @rule(seconds=st.integers(1, 6 * 3600))
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.enforcer.tick(self.now)

    # ------------------------------------------------------------------ the property

    @invariant()
    def no_template_without_active_consent(self) -> None:
        assert self.ledger.version == self.dev_version
        for store, modality in zip(self.stores, MODALITIES, strict=True):
            for subject in store.subjects():
                assert self._active(subject, modality), f"{modality} template kept without consent"

    @invariant()
    def receipts_carry_no_template_bytes(self) -> None:
        receipts = self.sink.of_kind("deletion_receipt")
        if receipts:
            event("deletion receipts emitted")
        for body in receipts:
            assert b"opaque-template" not in repr(body).encode()
            assert set(body) == {"subject", "deleted", "records", "reason", "consent_version", "deleted_at"}


ConsentMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConsentInterleavings = ConsentMachine.TestCase
