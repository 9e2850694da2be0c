"""Degrade, don't die: the agent's stores opened so that one bad store never stops the door.

``open_event_stores`` opens the audit log, the outbox and the consent ledger the way ``edge run``
needs them: a damaged file is set aside and a fresh one started (``open_or_replace``); a store
that cannot be opened at all (a read-only state directory, a file the agent may not write) falls
back to what still serves the door:

| store | fallback | what stops |
| --- | --- | --- |
| audit log | none | every biometric decision (``FailClosedConsent``): nothing may be enrolled, matched or purged unaudited |
| consent ledger | the file read-only, else an empty ledger in memory that takes the retained list | biometric decisions (no audit trail for a list) |
| outbox | an outbox in memory (events published, lost if the agent stops first) | nothing |
| gallery | none | biometric decisions; cards, PINs and QR codes go on |

Each fallback is named in ``notes`` (installer words) and raised as a ``store_unavailable``
alarm once the event sink is up (``announce``). ``wire_storage`` connects the rest: the storage
health alarm (``disk_full``/``disk_read_only``) to the sink, and the set-aside stores and
quarantined gallery rows reported once. (The enforcer's tick re-drives its deletion journal.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.errors import EdgeError, StorageError
from edge.events.kinds import Alarm
from edge.state import StateDir
from edge.state_health import HEALTH

if TYPE_CHECKING:
    from nacl.signing import SigningKey

    from edge.agent.ports import ConsentPort
    from edge.audit.log import AuditLog
    from edge.config.schema import AgentConfig, GallerySection
    from edge.consent.ledger import ConsentLedger
    from edge.credentials.authorise import EntryLike
    from edge.gallery.store import Gallery
    from edge.transport.outbox import Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Note:
    """One store running on a fallback: which, what it means at the door, and the fix."""

    store: str  # audit | consent | outbox | gallery
    what: str
    fix: str


@dataclass
class EventStores:
    audit: AuditLog | None
    outbox: Outbox
    ledger: ConsentLedger
    notes: list[Note] = field(default_factory=list)

    @property
    def biometric_ok(self) -> bool:
        """Whether biometric decisions may be made: an audit log and a writable ledger are there."""
        return self.audit is not None and not any(n.store in ("audit", "consent") for n in self.notes)

    def close(self) -> None:
        self.ledger.close()
        self.outbox.close()
        if self.audit is not None:
            self.audit.close()


def _why(exc: BaseException) -> str:
    return exc.one_line() if isinstance(exc, EdgeError) else f"{exc.__class__.__name__}: {exc}"


def open_event_stores(config: AgentConfig, state: StateDir, key: SigningKey, device: str) -> EventStores:
    """The audit log, outbox and ledger for ``edge run`` (see the module docstring)."""
    from edge.audit.log import AuditLog
    from edge.consent.ledger import ConsentLedger
    from edge.transport.outbox import Outbox

    notes: list[Note] = []
    audit: AuditLog | None
    try:
        audit = AuditLog.open_or_replace(state.audit_db, key)
    except StorageError as exc:
        audit = None
        notes.append(
            Note(
                "audit",
                f"the audit log cannot be opened ({_why(exc)}): biometric decisions are off, cards work",
                exc.hint or "check the state directory and the SD card, then restart the agent",
            )
        )
    try:
        outbox = Outbox.open_or_replace(
            state.outbox_db, max_events=config.mqtt.outbox_max_events, max_age_s=config.mqtt.outbox_max_age_s
        )
    except StorageError as exc:
        outbox = Outbox.in_memory(state.outbox_db)
        notes.append(
            Note(
                "outbox",
                f"the outbox cannot be opened ({_why(exc)}): events are kept in memory only",
                exc.hint or "check the state directory, then restart the agent",
            )
        )
    site, grace = config.device.site, config.consent.grace_period_s
    try:
        ledger = ConsentLedger.open_or_replace(state, site, grace_period_s=grace, audit=audit, device=device)
    except StorageError as exc:
        try:
            ledger = ConsentLedger.open_fallback(state, site, grace_period_s=grace, device=device, read_only=True)
            how = "read-only: the last list serves cards, a new list cannot be applied"
        except StorageError:
            ledger = ConsentLedger.open_fallback(state, site, grace_period_s=grace, device=device, read_only=False)
            how = "in memory: cards work once the retained list arrives"
        notes.append(
            Note(
                "consent",
                f"the consent ledger cannot be opened ({_why(exc)}); it runs {how}; biometric decisions are off",
                exc.hint or "check the state directory, then restart the agent",
            )
        )
    for note in notes:
        log.error("%s (fix: %s)", note.what, note.fix)
    return EventStores(audit, outbox, ledger, notes)


def open_gallery(state: StateDir, section: GallerySection, notes: list[Note]) -> Gallery | None:
    """The gallery, or None (biometric decisions off, a note added) when it cannot be opened even
    after a damaged file was set aside."""
    from edge.gallery.store import Gallery

    try:
        return Gallery.open_or_replace(state, section)
    except StorageError as exc:
        notes.append(
            Note(
                "gallery",
                f"the gallery cannot be opened ({_why(exc)}): biometric decisions are off, cards work",
                exc.hint or "check the state directory and gallery.key, then restart the agent",
            )
        )
        log.error("%s", notes[-1].what)
        return None


class FailClosedConsent:
    """A consent port that serves the credential path and refuses every biometric use.

    ``is_stale`` is True and ``allows`` False, so the gate denies a face or a finger (reason
    ``consent_stale``, the fail-closed reason) while ``credential_subject`` and ``entry`` answer
    from the ledger as before. Used when the audit log or a writable ledger is missing, and in
    safe mode."""

    def __init__(self, ledger: ConsentPort, reason: str) -> None:
        self.ledger = ledger
        self.reason = reason

    @property
    def version(self) -> int | None:
        return self.ledger.version

    def allows(self, _subject: str, _modality: str, _purpose: str | None, _now: float) -> bool:
        return False

    def is_stale(self, _now: float) -> bool:
        return True

    def credential_subject(self, kind: str, value: str, now: float) -> str | None:
        return self.ledger.credential_subject(kind, value, now)

    def entry(self, subject: str) -> EntryLike | None:
        return self.ledger.entry(subject)

    def __getattr__(self, name: str) -> object:  # anything else the gate reads (schedules, place, ...)
        return getattr(self.ledger, name)


def announce(notes: Iterable[Note], emit: Callable[[Alarm], None]) -> None:
    """One ``store_unavailable`` alarm per store on a fallback (component: the store)."""
    for note in notes:
        try:
            emit(Alarm("store_unavailable", "critical", "raised", note.store))
        except Exception as exc:
            log.error("could not raise the store_unavailable alarm (%s)", exc.__class__.__name__)


def wire_storage(
    state: StateDir,
    emit: Callable[[Alarm], None],
    audit: AuditLog | None,
    *,
    gallery: Gallery | None = None,
    ledger: ConsentLedger | None = None,
    notes: Iterable[Note] = (),
) -> None:
    """Connect the degrade machinery once the sink and the enforcer exist (see the module docstring)."""
    from edge.gallery.damage import watch_damage
    from edge.state_recovery import report_set_aside

    HEALTH.watch(state.root)
    HEALTH.on_alarm = emit  # the enforcer's tick re-drives its journal every second; nothing to hook here
    announce(notes, emit)
    if audit is None:
        return
    try:
        report_set_aside(state.root, audit.append, emit)
    except StorageError as exc:
        log.error("damaged stores not reported yet (%s); reported at the next start", exc.one_line())
    if gallery is not None:

        def candidates() -> list[str]:
            return [e.subject for e in ledger.entries()] if ledger is not None else []

        watch_damage(gallery, audit.append, emit, candidates)
