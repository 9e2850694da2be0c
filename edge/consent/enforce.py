"""Enforcement: nothing is enrolled, matched or kept without active consent.

The ``Enforcer`` is the one door between the consent ledger and the biometric stores (the encrypted
face gallery, the fingerprint sensor's slots). One lock covers "check consent, then write a
template" and "apply a list, then purge", so a withdrawal can never slip between an enrolment's
check and its write.

Reconciliation (at start-up, after every list change, when an entry expires) deletes every
template of every subject whose consent for that store's modality and the device's purpose is not
in force. Each subject's deletion is one ``Deletion``: audited in the enforcer's words (what each
store deleted, counts or slots; the precise cause) and published as one signed
``DeletionReceipt`` (which modalities, how many records, the reason a person reads, when, under
which list version). Never template bytes.

Staleness (list older than its validity plus the grace period) stops enrolment and matching but
does not delete: an unreachable authority must not wipe a site's gallery. It raises an ``alarm``.
Neither does a ledger that holds no list at all (a fresh one started after the old file was
damaged): nothing is judged until a list arrives.

Each deletion is one unit of work in the ``DeletionJournal`` (``edge.consent.journal``): written
before anything is deleted, then the stores, the audit record and the receipt (committed to the
outbox, not just held in memory); a full disk or a crash on the way leaves the unit in the
journal and ``tick`` completes it once the disk takes writes again. No deletion without its
receipt, ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from edge.audit.log import AuditLog
from edge.consent.journal import DeletionJournal, PendingDeletion
from edge.consent.ledger import ApplyOutcome, ConsentLedger, ListRejected
from edge.errors import ConsentError, StorageError
from edge.events.kinds import Alarm, DeletionReceipt, ReceiptReason
from edge.events.sink import EventSink
from edge.modality import ALL, Modality

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A wall-clock change against the monotonic clock larger than this between two ticks is a step.
CLOCK_STEP_S = 120.0


@runtime_checkable
class BiometricStore(Protocol):
    """Anything that holds templates by subject: the face gallery, the fingerprint sensor's slots.

    Optional attributes the enforcer reads when present: ``name`` (receipt key, default the class
    name), ``modality`` (``"face"`` / ``"fingerprint"``; without it a subject is kept while any
    of their modalities is consented), ``has_subject(subject) -> bool`` (a cheap membership
    test, so a withdrawal does not list a 10k-subject store). A store whose templates another
    thread erases later (the sensor) is a ``DeferredStore`` instead.
    """

    def subjects(self) -> set[str]:
        """Every subject with at least one template in this store."""
        ...

    def delete_subject(self, subject: str) -> Mapping[str, object]:
        """Delete every template of ``subject``; return what went (e.g. ``{"templates": 3}``)."""
        ...


@runtime_checkable
class DeferredStore(Protocol):
    """A store whose templates are erased later by the thread that owns the device (the sensor):
    ``schedule_deletion`` queues them durably and returns how many; the receipt is signed by
    ``Enforcer.erased`` once they are gone. Reads ``name``/``modality``/``has_subject`` as above."""

    def subjects(self) -> set[str]: ...

    def schedule_deletion(self, subject: str, reason: str, list_version: int) -> int: ...


Store = BiometricStore | DeferredStore


def store_name(store: Store) -> str:
    return str(getattr(store, "name", type(store).__name__))


def store_modality(store: Store) -> str | None:
    modality = getattr(store, "modality", None)
    return str(modality) if modality is not None else None


#: The enforcer's precise cause of a deletion (audited) -> the reason the receipt gives the person.
#: Not consented for this modality or purpose any more is, to the person, a withdrawal; a consent that
#: stands elsewhere on the site but no longer covers this gate is ``out_of_scope`` (the person's
#: templates left this gate, not the site).
RECEIPT_REASONS: dict[str, ReceiptReason] = {
    "withdrawn": "withdrawn",
    "expired": "expired",
    "not-in-list": "not_listed",
    "out-of-scope": "out_of_scope",
    "admin": "admin",
}


def _count(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    return 0


#: One store's part of a deletion: its name, its modality (if it has one) and what it reported.
StorePart = tuple[str, str | None, Mapping[str, object]]


@dataclass(frozen=True)
class Deletion:
    """What the enforcer deleted for one subject: audited in its own words (``deleted``, the precise
    ``reason``), published as one ``DeletionReceipt`` (``receipt()``)."""

    subject: str
    parts: tuple[StorePart, ...]
    reason: str  # the precise cause: withdrawn, expired, not-in-list, out-of-scope, ...
    list_version: int | None
    at: float

    @property
    def deleted(self) -> dict[str, Mapping[str, object]]:
        """Store name -> what that store reported (counts, slots): the audit record's ``deleted``."""
        return {name: result for name, _modality, result in self.parts}

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """The kinds of template that went: each store's own modality, and any its report lists."""
        found: set[str] = set()
        for _name, modality, result in self.parts:
            if modality is not None:
                found.add(modality)
            listed = result.get("modalities")
            if isinstance(listed, (list, tuple)):
                found.update(str(m) for m in listed)
        return tuple(m for m in ALL if m.value in found)

    @property
    def records(self) -> int:
        """Stored records removed: face templates plus sensor slots."""
        return sum(_count(r.get("templates", 0)) + _count(r.get("slots", ())) for _n, _m, r in self.parts)

    def receipt(self) -> DeletionReceipt:
        return DeletionReceipt(
            subject=self.subject,
            deleted=self.modalities,
            records=self.records,
            reason=RECEIPT_REASONS.get(self.reason, "withdrawn"),
            consent_version=self.list_version or 0,
            deleted_at=int(self.at),
        )


def _held(store: Store, subjects: Iterable[str]) -> list[str]:
    """Which of ``subjects`` the store holds (its optional ``has_subject`` avoids listing them all)."""
    has_subject = getattr(store, "has_subject", None)
    if callable(has_subject):
        return [s for s in subjects if has_subject(s)]
    held = store.subjects()
    return [s for s in subjects if s in held]


class ErasedSlot(Protocol):
    """A sensor slot erased after its subject's consent ended (``edge.fingerprint.erasure.PendingErase``)."""

    @property
    def slot(self) -> int: ...

    @property
    def subject(self) -> str | None: ...

    @property
    def reason(self) -> str: ...

    @property
    def list_version(self) -> int: ...


#: Why an enrolment was refused (the ``reason`` of an ``enrolment_refused`` audit record).
REFUSAL_REASONS = ("no_consent", "consent_stale", "presentation_attack", "duplicate", "capture_failed")


class ConsentView(Protocol):
    """What the enrolment rule reads: the ledger, or a test's consent double."""

    def allows(self, subject: str, modality: str, purpose: str | None, now: float) -> bool: ...

    def is_stale(self, now: float) -> bool: ...


def enrolment_refusal(consent: ConsentView, subject: str, modality: str, purpose: str | None, now: float) -> str | None:
    """The rule: ``consent_stale`` while the list is stale (fail closed), ``no_consent`` without an
    active grant for this modality and purpose, else None (the enrolment may go ahead)."""
    if consent.is_stale(now):
        return "consent_stale"
    if not consent.allows(subject, modality, purpose, now):
        return "no_consent"
    return None


class EnrolmentRefused(ConsentError):  # noqa: N818 - reads as what happened
    """Enrolment refused: no active consent for this modality and purpose, or the list is stale."""

    def __init__(self, modality: str, reason: str, purpose: str | None = None) -> None:
        self.modality = modality
        self.reason = reason
        if reason == "consent_stale":
            super().__init__(
                "the cached consent list is stale (fail closed): enrolment is stopped until a fresh list arrives",
                hint="check the broker connection, or apply a list with `edge consent apply FILE`",
            )
        else:
            super().__init__(
                f"no active consent for {modality} enrolment of this subject for {purpose or 'this purpose'}",
                hint="the site's consent authority must issue a list granting it; `edge consent show` lists entries",
            )


class Enforcer:
    def __init__(
        self,
        ledger: ConsentLedger,
        stores: Sequence[Store],
        sink: EventSink,
        audit: AuditLog | None,
        *,
        purpose: str | None = None,
        journal: DeletionJournal | None = None,
    ) -> None:
        self.ledger = ledger
        self.stores = list(stores)
        self.sink = sink
        self.audit = audit
        self.purpose = purpose
        self.journal = journal if journal is not None else DeletionJournal()
        self._lock = threading.RLock()
        self._next_expiry: float | None = None
        self._stale: bool | None = None
        self._seen: int | None = None  # the ledger generation the stores were last reconciled with
        self._incomplete = False  # a deletion waits for the disk: reconcile again at the next tick
        self._no_list_logged = False
        self._clock_offset: float | None = None  # wall minus monotonic at the last tick
        self._clock_behind = False

    # ------------------------------------------------------------------ lists

    def apply(self, message: bytes, now: float) -> ApplyOutcome:
        """Apply a list and purge what it no longer allows, under one lock. Raises ``ListRejected``."""
        with self._lock:
            self.ledger.reload_if_changed()
            behind = self._seen != self.ledger.generation  # changes this enforcer has not purged for
            try:
                outcome = self.ledger.apply(message, now)
            except ListRejected:
                if behind:
                    self.reconcile(now)
                raise
            if behind or self._expiry_due(now):
                self.reconcile(now)
            elif outcome.changed:
                self.reconcile(now, subjects=outcome.affected)  # only what this list changed
                self._seen = self.ledger.generation  # and nothing else changed since the last purge
            self._check_stale(now)
            return outcome

    def startup(self, now: float) -> list[Deletion]:
        """Reconcile on start: templates left by a crash or an old list are purged now."""
        with self._lock:
            receipts = self.reconcile(now)
            self._check_stale(now)
            return receipts

    def tick(self, now: float) -> list[Deletion]:
        """Call about once a second: picks up lists applied by other processes and expiries, and
        completes deletions a full disk or a crash left half done."""
        with self._lock:
            self._watch_clock(now)
            receipts = self.redrive()
            self.ledger.reload_if_changed()
            if self._seen != self.ledger.generation or self._expiry_due(now) or self._incomplete:
                receipts += self.reconcile(now)
            self._check_stale(now)
            return receipts

    # ------------------------------------------------------------------ reconciliation

    def _reason(self, subject: str, now: float) -> str:
        entry = self.ledger.entry(subject)
        if entry is None:
            return "not-in-list"
        if entry.status == "withdrawn":
            return "withdrawn"
        if entry.expires_at is not None and now >= entry.expires_at:
            return "expired"
        if now < entry.granted_at:
            return "not-yet-granted"
        if self.purpose is not None and self.purpose not in entry.purposes:
            return "purpose-not-consented"
        if entry.consent_active(now) and not self.ledger.place.covers(entry.scope):
            return "out-of-scope"  # consent stands elsewhere on the site, not at this gate
        return "modality-not-consented"

    def _expiry_due(self, now: float) -> bool:
        return self._next_expiry is not None and now >= self._next_expiry

    def reconcile(self, now: float, subjects: Iterable[str] | None = None) -> list[Deletion]:
        """Purge every subject without active consent from every store; one receipt per subject.

        With ``subjects``, only those are checked (after a list change that named them); without,
        every subject in every store is (start-up, expiries, lists applied by another process).
        Nothing is purged while the ledger holds no list at all.
        """
        with self._lock:
            full = subjects is None
            if full:
                self.ledger.reload_if_changed()
            if self.ledger.info is None:
                if not self._no_list_logged:
                    log.warning(
                        "no consent list in force: nothing is deleted until one arrives (biometrics fail closed)"
                    )
                    self._no_list_logged = True
                return []
            if self.ledger.clock_behind(now):  # every entry would look "not yet granted": judge nothing
                if not self._no_list_logged:
                    log.warning("the clock reads before the list's issue time: nothing is deleted until it is right")
                    self._no_list_logged = True
                self._incomplete = True  # reconcile again once the clock is right
                return []
            self._no_list_logged = False
            version = self.ledger.version
            plan: dict[str, list[str]] = {}
            reasons: dict[str, str] = {}
            queued = 0
            self._incomplete = False
            for store in self.stores:
                modality = store_modality(store)
                for subject in sorted(store.subjects() if subjects is None else _held(store, subjects)):
                    if self.ledger.retains(subject, modality, self.purpose, now):
                        continue
                    reason = reasons.setdefault(subject, self._reason(subject, now))
                    if isinstance(store, DeferredStore):
                        # the template is erased later by the device's owner: its receipt follows then
                        try:
                            queued += store.schedule_deletion(subject, reason, version or 0)
                        except StorageError as exc:
                            log.error("a sensor erase could not be queued (%s); retried", exc.one_line())
                            self._incomplete = True
                        continue
                    plan.setdefault(subject, []).append(store_name(store))
            receipts: list[Deletion] = []
            for subject in sorted(plan):
                entry = PendingDeletion(
                    subject, reasons[subject], version, float(now), stores_left=plan[subject], audit_floor=self._head()
                )
                try:
                    self.journal.begin(entry)
                except StorageError as exc:
                    log.error("a deletion waits for the disk (%s); the template is not used meanwhile", exc.one_line())
                    self._incomplete = True
                    continue
                done = self._drive(entry)
                if done is not None:
                    receipts.append(done)
            if queued:
                log.info("%s sensor template(s) queued for erasure; their receipts follow the erase", queued)
            if receipts:
                log.info("reconciliation deleted templates of %s subject(s) under list %s", len(receipts), version)
            self._next_expiry = self.ledger.next_expiry(now)
            if full and not self._incomplete:
                self._seen = self.ledger.generation
            return receipts

    def redrive(self) -> list[Deletion]:
        """Complete the deletions in the journal (each store, the audit record, the receipt)."""
        with self._lock:
            out = []
            for entry in self.journal.entries():
                done = self._drive(entry)
                if done is not None:
                    out.append(done)
            return out

    @property
    def pending_deletions(self) -> int:
        """Deletions begun and not yet receipted (waiting for the disk)."""
        return len(self.journal)

    def _head(self) -> int:
        return self.audit.head_seq if self.audit is not None else 0

    def _drive(self, entry: PendingDeletion) -> Deletion | None:
        """Take one unit as far as it goes now; the ``Deletion`` once its receipt is committed."""
        by_name = {store_name(s): s for s in self.stores}
        for name in list(entry.stores_left):
            store = by_name.get(name)
            if store is None or isinstance(store, DeferredStore):
                entry.stores_left.remove(name)
                continue
            try:
                result = dict(store.delete_subject(entry.subject))
            except StorageError as exc:
                log.error("a deletion waits for the disk (%s)", exc.one_line())
                self._incomplete = True
                self.journal.save()
                return None
            entry.parts.append((name, store_modality(store), result))
            entry.stores_left.remove(name)
            self.journal.save()
        done = Deletion(entry.subject, tuple(entry.parts), entry.reason, entry.list_version, entry.at)
        if not entry.audited and self.audit is not None:
            try:
                if not self._audited(entry):
                    self.audit.append(
                        "deletion",
                        {
                            "subject": entry.subject,
                            "deleted": done.deleted,
                            "reason": entry.reason,
                            "list_version": entry.list_version,
                        },
                        at=entry.at,
                    )
            except StorageError as exc:
                log.error("a deletion's audit record waits for the disk (%s)", exc.one_line())
                self._incomplete = True
                self.journal.save()
                return None
            entry.audited = True
            self.journal.save()
        try:
            self._emit_receipt(done)
        except StorageError as exc:
            log.error("a deletion receipt waits for the disk (%s)", exc.one_line())
            self._incomplete = True
            return None
        self.journal.done(entry)
        return done

    def _audited(self, entry: PendingDeletion) -> bool:
        """Whether this unit's audit record is already in the log (written before a crash)."""
        assert self.audit is not None
        return any(
            r.kind == "deletion"
            and r.details.get("subject") == entry.subject
            and r.details.get("reason") == entry.reason
            and r.details.get("list_version") == entry.list_version
            and r.at == entry.at
            for r in self.audit.records(since=entry.audit_floor)
        )

    def _emit_receipt(self, done: Deletion) -> None:
        """Commit the receipt: to the outbox's file when the sink can say so (``emit_durably``)."""
        durable = getattr(self.sink, "emit_durably", None)
        if callable(durable):
            durable(done.receipt())
        else:
            self.sink.emit(done.receipt())

    def erased(self, done: Sequence[ErasedSlot], now: float) -> list[Deletion]:
        """Receipts for sensor slots the device's owner has just erased (one per subject and reason).

        Called from the thread that erased them; orphans (no subject) owe nobody a receipt. Raises
        ``StorageError`` when the units cannot even be journaled: the caller keeps the slots queued
        (erasing them again is harmless) and calls again later.
        """
        groups: dict[tuple[str, str, int], list[int]] = {}
        for item in done:
            if item.subject is not None:
                groups.setdefault((item.subject, item.reason, item.list_version), []).append(item.slot)
        receipts = []
        with self._lock:
            for (subject, reason, version), slots in sorted(groups.items()):
                result: dict[str, object] = {"templates": 0, "slots": sorted(slots), "modalities": ["fingerprint"]}
                entry = PendingDeletion(
                    subject,
                    reason,
                    version,
                    float(now),
                    parts=[("fingerprint", "fingerprint", result)],
                    audit_floor=self._head(),
                )
                self.journal.begin(entry)
                receipt = self._drive(entry)
                if receipt is not None:
                    receipts.append(receipt)
        return receipts

    def _watch_clock(self, now: float) -> None:
        """One ``clock_step`` alarm (component ``clock``, ``count`` the step in whole seconds) when the
        wall clock moved against the monotonic clock by more than ``CLOCK_STEP_S`` between ticks;
        ``clock_behind`` raised while the clock reads before the list's issue time."""
        offset = now - time.monotonic()
        if self._clock_offset is not None and abs(offset - self._clock_offset) > CLOCK_STEP_S:
            step = offset - self._clock_offset
            log.warning("the wall clock stepped %+.0f s; consent times are judged on the new clock", step)
            self._emit_alarm(Alarm("clock_step", "warning", component="clock", count=abs(int(step))))
        self._clock_offset = offset
        behind = self.ledger.clock_behind(now)
        if behind != self._clock_behind:
            self._clock_behind = behind
            if behind:
                log.error("the clock reads before the consent list's issue time: biometrics fail closed")
            self._emit_alarm(Alarm("clock_behind", "critical", "raised" if behind else "cleared", "clock"))

    def _emit_alarm(self, alarm: Alarm) -> None:
        try:
            self.sink.emit(alarm)
        except Exception as exc:
            log.error("the %s alarm could not be queued (%s)", alarm.code, exc.__class__.__name__)

    def _check_stale(self, now: float) -> None:
        stale = self.ledger.is_stale(now)
        if stale == self._stale:
            return
        first = self._stale is None
        self._stale = stale
        if first and not stale:
            return
        info = self.ledger.info
        if stale:
            log.warning("consent list is stale: biometric enrolment and matching stopped (fail closed)")
        else:
            log.info("consent list is fresh again: biometric enrolment and matching resume")
        if self.audit is not None:
            details: dict[str, object] = {
                "alarm": "consent_stale",
                "active": stale,
                "list_version": info.version if info else None,
                "valid_until": info.valid_until if info else None,
                "grace_period_s": self.ledger.grace_period_s,
                "at": float(now),
            }
            try:
                self.audit.append("consent_stale" if stale else "consent_fresh", details, at=now)
            except StorageError as exc:  # the alarm still goes out; the disk refused its record
                log.error("could not audit the consent list's staleness (%s)", exc.one_line())
        self._emit_alarm(Alarm("consent_stale", "warning", "raised" if stale else "cleared", "consent"))

    # ------------------------------------------------------------------ enrolment and matching

    def _refuse(self, subject: str, modality: str, reason: str, now: float) -> None:
        if self.audit is not None:
            self.audit.append("enrolment_refused", {"subject": subject, "modality": modality, "reason": reason}, at=now)
        log.info("%s enrolment refused: %s", modality, reason)

    def check_enrolment(self, subject: str, modality: str, now: float) -> None:
        """Refuse before any capture when consent does not allow it: audited, raises ``EnrolmentRefused``."""
        with self._lock:
            self.ledger.reload_if_changed()
            reason = enrolment_refusal(self.ledger, subject, modality, self.purpose, now)
            if reason is not None:
                self._refuse(subject, modality, reason, now)
                raise EnrolmentRefused(modality, reason, self.purpose)

    def refuse(self, subject: str, modality: str, reason: str, now: float) -> None:
        """Audit a refusal the caller decided (a capture that failed, a duplicate finger, an attack)."""
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}; expected one of {', '.join(REFUSAL_REASONS)}")
        with self._lock:
            self._refuse(subject, modality, reason, now)

    def enrol(
        self,
        subject: str,
        modality: str,
        now: float,
        write: Callable[[], T],
        *,
        flagged: Callable[[T], bool] = lambda _result: False,
        source: str | None = None,
    ) -> T:
        """Run ``write`` (which stores the template) only if consent is active, under the lock, and audit
        the outcome: ``enrolment`` (``result`` ``enrolled`` or ``duplicate_flagged`` when ``flagged``
        says the template matched another subject) or ``enrolment_refused``."""
        with self._lock:
            self.ledger.reload_if_changed()
            if self._seen != self.ledger.generation or self._expiry_due(now):
                self.reconcile(now)  # catch up before writing anything new
            reason = enrolment_refusal(self.ledger, subject, modality, self.purpose, now)
            if reason is not None:
                self._refuse(subject, modality, reason, now)
                raise EnrolmentRefused(modality, reason, self.purpose)
            result = write()
            if self.audit is not None:
                outcome = "duplicate_flagged" if flagged(result) else "enrolled"
                details: dict[str, object] = {"subject": subject, "modality": modality, "result": outcome}
                if source is not None:
                    details["source"] = source  # the gate whose sealed parcel this was (site sync)
                self.audit.append("enrolment", details, at=now)
            return result
