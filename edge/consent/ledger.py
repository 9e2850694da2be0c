"""The device's consent ledger: the last good signed list, persisted in SQLite and held in memory.

``apply`` verifies a list completely (signature and key id against the pinned authority keys,
site, version, validity window, delta base, key announcements) before it writes anything; a
rejected list raises ``ListRejected`` with a specific ``reason``, leaves the state untouched and is
written to the audit log. An accepted list is applied in one SQLite transaction (WAL,
``synchronous=FULL``), so the last good list survives power loss.

Several processes may share the database (``edge consent apply`` beside a running agent): the
agent's ledger notices another connection's commit (``reload_if_changed``) and reloads.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cbor2
from nacl.signing import VerifyKey

from edge.audit.log import AuditLog
from edge.consent import trust
from edge.consent.listformat import (
    ConsentList,
    Entry,
    Gate,
    KeyAnnouncement,
    Passback,
    Place,
    _entry,
    _entry_to_cbor,
    gate_from_cbor,
    gate_to_cbor,
)
from edge.consent.signing import MAX_VERSION, MAX_VERSION_STEP, ListRejected, verify_list
from edge.credentials.hashing import KEY_FILE_NAME, KEY_SIZE, CredentialFormatError, credential_digest
from edge.credentials.panel_number import PanelNumberError, open_panel_number
from edge.crypto.keys import key_id, read_secret
from edge.crypto.strictcbor import COSE as _COSE_PROFILE
from edge.errors import StorageError, StorageUnavailable, StoreDamaged
from edge.state import StateDir
from edge.state_faults import check_write, storage_error
from edge.state_health import HEALTH

__all__ = ["ApplyOutcome", "ConsentLedger", "ListRejected"]

log = logging.getLogger(__name__)

#: The largest list message a device takes (the strict COSE profile's bound).
MAX_LIST_BYTES = _COSE_PROFILE.max_size
#: How far in the future a list's ``issued_at`` may lie (device clocks drift).
CLOCK_SKEW_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    site TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    signer_kid BLOB NOT NULL,
    message BLOB NOT NULL,
    applied_at REAL NOT NULL,
    keys BLOB,
    keys_done INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS entries (
    subject TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gates (
    id TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS list_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_audit (
    id INTEGER PRIMARY KEY,
    details BLOB NOT NULL,
    at REAL NOT NULL,
    audit_floor INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class ApplyOutcome:
    """What an accepted list changed. ``changed`` is False for a redelivery of the list in force."""

    changed: bool
    version: int
    kind: str
    previous_version: int | None
    affected: frozenset[str] = field(default_factory=frozenset, repr=False)
    pinned: tuple[bytes, ...] = ()
    retired: tuple[bytes, ...] = ()
    #: the list is in force but its ``consent_applied`` audit record could not be written yet (a
    #: full disk): it is kept in the ledger and written by the next apply, tick or open
    audit_pending: bool = False
    #: a ``consent_applied`` record left pending earlier was written by this call
    audit_completed: bool = False

    def __repr__(self) -> str:
        return (
            f"ApplyOutcome(changed={self.changed}, version={self.version}, kind={self.kind!r}, "
            f"previous_version={self.previous_version}, affected={len(self.affected)}, "
            f"audit_pending={self.audit_pending})"
        )


@dataclass(frozen=True)
class ListInfo:
    site: str
    version: int
    kind: str
    issued_at: int
    valid_until: int
    signer_kid: bytes
    applied_at: float
    message: bytes = field(repr=False)


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _digest_prefix(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()[:16]


class ConsentLedger:
    def __init__(
        self,
        state: StateDir,
        site: str,
        conn: sqlite3.Connection,
        *,
        grace_period_s: float,
        audit: AuditLog | None,
        device: str = "",
    ) -> None:
        self.state = state
        self.site = site
        #: this gate's device id: with the zones the list's roster gives it, its ``place``
        self.device = device
        self._gates: dict[str, Gate] = {}
        self._timezone: str | None = None
        self.grace_period_s = float(grace_period_s)
        self.audit = audit
        self._conn = conn
        self._lock = threading.RLock()
        self._info: ListInfo | None = None
        self._entries: dict[str, Entry] = {}
        self._raw: dict[str, tuple[dict[str, Any], Entry]] = {}
        self._by_credential: dict[tuple[str, bytes], str] = {}
        self._data_version = -1
        #: Bumped whenever the entries in memory change (a load or an applied list).
        self.generation = 0
        self._credential_key: bytes | None = None
        self._credential_key_loaded = False
        self._audit_due = False
        try:
            self._load()
        except (sqlite3.DatabaseError, cbor2.CBORDecodeError, ValueError, TypeError, KeyError) as exc:
            raise StoreDamaged(state.consent_db, "consent ledger", exc) from None
        self._finish_key_announcement()
        self._audit_due = not self.finish_pending_audit()

    # ------------------------------------------------------------------ open / load

    @classmethod
    def open(
        cls,
        state: StateDir,
        site: str,
        *,
        grace_period_s: float,
        audit: AuditLog | None = None,
        device: str = "",
    ) -> ConsentLedger:
        path = state.consent_db
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open the consent ledger ({exc})") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            error = storage_error(path, "consent ledger", exc)
            if isinstance(error, StoreDamaged):
                raise error from None
            raise StorageError(f"{path}: cannot open the consent ledger ({exc})", hint=error.hint) from None
        try:
            return cls(state, site, conn, grace_period_s=grace_period_s, audit=audit, device=device)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open_fallback(
        cls, state: StateDir, site: str, *, grace_period_s: float, device: str = "", read_only: bool = True
    ) -> ConsentLedger:
        """A ledger for a state directory that cannot be written: ``read_only`` opens the file as it
        is (the card path keeps the last list; a new list cannot be applied), else an empty ledger
        in memory that takes the retained list from MQTT and forgets it at exit. No audit log: such
        a ledger never serves a biometric decision (``edge.ops.degrade.FailClosedConsent``)."""
        target = f"file:{state.consent_db}?mode=ro&immutable=1" if read_only else ":memory:"
        try:
            conn = sqlite3.connect(target, uri=read_only, check_same_thread=False, isolation_level=None)
            if not read_only:
                conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise storage_error(state.consent_db, "consent ledger", exc) from None
        try:
            return cls(state, site, conn, grace_period_s=grace_period_s, audit=None, device=device)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open_or_replace(
        cls,
        state: StateDir,
        site: str,
        *,
        grace_period_s: float,
        audit: AuditLog | None = None,
        device: str = "",
    ) -> ConsentLedger:
        """Open the ledger; a damaged file is set aside and a fresh ledger started. The last list
        still readable in the damaged file is applied again with every check of a new list (the
        signature against the pinned keys, the site; at the time it was first applied), so the
        gate keeps its list; otherwise the fresh ledger holds no list (biometrics fail closed, and
        nothing is purged for want of one) until the retained list arrives over MQTT."""
        from dataclasses import replace

        from edge.state_recovery import set_aside, write_note

        try:
            return cls.open(state, site, grace_period_s=grace_period_s, audit=audit, device=device)
        except StoreDamaged as exc:
            info = set_aside(state.consent_db, "consent", exc.detail)
        ledger = cls.open(state, site, grace_period_s=grace_period_s, audit=audit, device=device)
        salvaged = _salvage(state.consent_db.with_name(info.aside))
        restored = 0
        if salvaged is not None:
            message, applied_at = salvaged
            try:
                ledger.apply(message, applied_at)
                restored = 1
            except (ListRejected, StorageError) as exc:
                log.error("the list salvaged from the damaged ledger was not applied again (%s)", exc)
        write_note(state.root, replace(info, salvaged=restored))
        return ledger

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _load(self) -> None:
        with self._lock:
            row = self._conn.execute(
                "SELECT site, version, kind, issued_at, valid_until, signer_kid, applied_at, message FROM meta"
            ).fetchone()
            entries: dict[str, Entry] = {}
            raws: dict[str, tuple[dict[str, Any], Entry]] = {}
            if row is not None:
                for subject, body in self._conn.execute("SELECT subject, body FROM entries"):
                    raw = cbor2.loads(body)
                    entry = _entry(raw, scoped=True)  # validated when its list was applied
                    if entry.subject != subject:
                        raise StorageError(f"{self.state.consent_db}: an entry row does not match its key")
                    entries[subject] = entry
                    raws[subject] = (raw, entry)
                gates = {}
                for gate_id, body in self._conn.execute("SELECT id, body FROM gates"):
                    gate = gate_from_cbor(cbor2.loads(body))
                    if gate.id != gate_id:
                        raise StorageError(f"{self.state.consent_db}: a gate row does not match its key")
                    gates[gate_id] = gate
                row_tz = self._conn.execute("SELECT value FROM list_settings WHERE name = 'timezone'").fetchone()
                timezone = None if row_tz is None else str(row_tz[0])
                info: ListInfo | None = ListInfo(
                    str(row[0]),
                    int(row[1]),
                    str(row[2]),
                    int(row[3]),
                    int(row[4]),
                    bytes(row[5]),
                    float(row[6]),
                    bytes(row[7]),
                )
            else:
                info = None
                gates = {}
                timezone = None
            self._info = info
            self._gates = gates
            self._timezone = timezone
            self._entries = entries
            self._raw = raws
            self.generation += 1
            self._by_credential = {(g.kind, g.digest): e.subject for e in entries.values() for g in e.credentials}
            self._data_version = self._pragma_data_version()

    def _pragma_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def reload_if_changed(self) -> bool:
        """Reload when another process committed a list (e.g. ``edge consent apply``); write a
        ``consent_applied`` record a full disk held back (the agent ticks this every second)."""
        with self._lock:
            if self._audit_due:
                self._audit_due = not self.finish_pending_audit()
            if self._pragma_data_version() == self._data_version:
                return False
            self._audit_due = self.audit is not None
            before = self.version
            self._load()
            if self.version != before:
                log.info("consent list %s applied by another process", self.version)
                return True
            return False

    # ------------------------------------------------------------------ queries

    @property
    def version(self) -> int | None:
        info = self._info
        return info.version if info else None

    @property
    def info(self) -> ListInfo | None:
        return self._info

    def entries(self) -> list[Entry]:
        with self._lock:
            return [self._entries[s] for s in sorted(self._entries)]

    def entry(self, subject: str) -> Entry | None:
        return self._entries.get(subject)

    def gates(self) -> dict[str, Gate]:
        """The site's gates as the list in force names them (empty without a roster)."""
        return dict(self._gates)

    @property
    def timezone(self) -> str:
        """The zone the list's schedules are written in (UTC unless the list names one)."""
        return self._timezone or "UTC"

    def in_schedule(self, subject: str, now: float) -> bool:
        """Whether ``subject`` may pass now by their schedule (True without one, or without an entry:
        the other checks decide those). Evaluated on this device's clock in the list's zone."""
        entry = self._entries.get(subject)
        if entry is None or entry.schedule is None:
            return True
        local = datetime.fromtimestamp(now, _zone(self.timezone))
        return entry.in_schedule(local.weekday(), local.hour * 60 + local.minute)

    def panel_number(self, subject: str) -> int | None:
        """The number the site's panel knows ``subject`` by (reader mode), or None when the entry
        carries none or this device lacks the site credential key. Never logged."""
        entry = self._entries.get(subject)
        key = self._load_credential_key()
        if entry is None or entry.panel is None or key is None:
            return None
        try:
            return open_panel_number(key, subject, entry.panel)
        except PanelNumberError:
            log.error("a panel number in the list does not open with this device's credential key")
            return None

    def passback(self) -> Passback | None:
        """This gate's anti-passback role (area, in/out) from the list's roster, or None."""
        gate = self._gates.get(self.device)
        return gate.passback if gate is not None else None

    @property
    def place(self) -> Place:
        """Where this gate stands: its id and the zones the roster gives it (none if it is not listed)."""
        gate = self._gates.get(self.device)
        return Place(self.device, gate.zones if gate is not None else frozenset())

    def is_stale(self, now: float) -> bool:
        """True without a list, when ``now`` is past the list's validity plus the grace period, or
        when the device's clock reads earlier than the list's issue time (``clock_behind``): a
        clock that is wrong cannot judge consent, so biometrics fail closed (credentials work)."""
        info = self._info
        return info is None or now > info.valid_until + self.grace_period_s or self.clock_behind(now)

    def clock_behind(self, now: float) -> bool:
        """Whether ``now`` (this device's clock) is before the list in force was issued, beyond the
        allowed skew: the clock stepped back (NTP correction, a Pi's dead RTC battery)."""
        info = self._info
        return info is not None and now < info.issued_at - CLOCK_SKEW_S

    def allows(self, subject: str, modality: str, purpose: str | None, now: float) -> bool:
        """Biometric use (enrolment or a match) of ``modality`` for ``purpose`` at this gate; False
        when stale, and where the entry's scope does not cover this gate."""
        if self.is_stale(now):
            return False
        entry = self._entries.get(subject)
        return entry is not None and entry.allows(modality, purpose, now, self.place)

    def retains(self, subject: str, modality: str | None, purpose: str | None, now: float) -> bool:
        """Whether templates of ``subject`` may be kept here. Staleness stops use, not retention; a
        scope that no longer covers this gate ends retention like a withdrawal."""
        entry = self._entries.get(subject)
        if entry is None:
            return False
        if modality is None:
            return any(entry.allows(m, purpose, now, self.place) for m in entry.modalities)
        return entry.allows(modality, purpose, now, self.place)

    def credential_subject(self, kind: str, value: str, _now: float) -> str | None:
        """The subject whose entry allows this card/PIN/QR credential, whatever their biometric consent.

        ``_now`` (the ports' signature) is not used: a credential is looked up whatever the entry's
        validity window (``expires_at``); relay mode's schedules (``edge.access.rules``) come after.

        Works while the list is stale (the non-biometric path never fails closed on staleness).
        None when the value is malformed, unknown, or the site's credential key is not installed.
        """
        key = self._load_credential_key()
        if key is None:
            return None
        try:
            digest = credential_digest(key, kind, value)
        except CredentialFormatError:
            return None
        return self._by_credential.get((kind, digest))

    def _load_credential_key(self) -> bytes | None:
        if not self._credential_key_loaded:
            path = self.state.trust_dir / KEY_FILE_NAME
            try:
                raw = read_secret(path)
            except StorageError:
                log.warning("no site credential key at %s: card/PIN/QR credentials cannot be checked", path)
                raw = b""
            self._credential_key = raw if len(raw) == KEY_SIZE else None
            self._credential_key_loaded = True
        return self._credential_key

    def next_expiry(self, after: float) -> float | None:
        """The earliest entry expiry strictly after ``after`` (for the enforcer's timer)."""
        with self._lock:
            times = [e.expires_at for e in self._entries.values() if e.expires_at is not None and e.expires_at > after]
            times += [e.granted_at for e in self._entries.values() if e.granted_at > after]
        return float(min(times)) if times else None

    # ------------------------------------------------------------------ apply

    def apply(self, message: bytes, now: float) -> ApplyOutcome:
        """Verify and apply one signed list; raises ``ListRejected`` (state unchanged, audited)."""
        with self._lock:
            had_pending = self.has_pending_audit()
            self.reload_if_changed()
            completed = had_pending and self.finish_pending_audit()
            info = self._info
            if info is not None and bytes(message) == info.message:  # a retained redelivery, or a retry
                return ApplyOutcome(
                    False,
                    info.version,
                    info.kind,
                    info.version,
                    audit_pending=had_pending and not completed,
                    audit_completed=completed,
                )
            try:
                if len(message) > MAX_LIST_BYTES:
                    raise ListRejected("oversize", f"{len(message)} bytes, over the {MAX_LIST_BYTES} a device takes")
                lst, kid = self._check(message, now)
            except ListRejected as exc:
                self._audit_rejection(exc, message, now)
                raise
            return self._commit(lst, kid, message, now)

    def _check(self, message: bytes, now: float) -> tuple[ConsentList, bytes]:
        keys: dict[bytes, VerifyKey] = trust.load_pinned(self.state)
        if not keys:
            raise StorageError(
                f"no consent authority key is pinned in {self.state.trust_dir}",
                hint="pin the site's consent authority key with `edge-provision trust`",
            )
        lst, kid = verify_list(message, keys, self._raw)
        if lst.timezone is not None:
            try:
                _zone(lst.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ListRejected("malformed-body", "the list's time zone is unknown on this device") from None
        if lst.site != self.site:
            raise ListRejected("wrong-site", f"the list is for site {lst.site!r}, this device serves {self.site!r}")
        info = self._info
        if lst.version > MAX_VERSION:
            raise ListRejected("version-jump", f"version {lst.version} is above the ceiling {MAX_VERSION}")
        if info is not None:
            if lst.version > info.version + MAX_VERSION_STEP:
                raise ListRejected(
                    "version-jump",
                    f"version {lst.version} is more than {MAX_VERSION_STEP} above version {info.version} in force",
                )
            if lst.version < info.version:
                raise ListRejected("rollback", f"version {lst.version} is older than version {info.version} in force")
            if lst.version == info.version:
                raise ListRejected("replay", f"version {lst.version} is in force with different content")
        if lst.issued_at > now + CLOCK_SKEW_S:
            raise ListRejected("not-yet-valid", "issued in the future (check the device clock)")
        if now >= lst.valid_until:
            raise ListRejected("expired", "its validity ended before it arrived")
        if lst.kind == "delta" and (info is None or lst.base != info.version):
            held = "no list" if info is None else f"version {info.version}"
            raise ListRejected("delta-base", f"the delta applies to version {lst.base}; this device holds {held}")
        if kid in lst.keys.retire:
            raise ListRejected("bad-key-announcement", "a list cannot retire the key that signed it")
        return lst, kid

    def _new_entries(self, lst: ConsentList) -> dict[str, Entry]:
        if lst.kind == "snapshot":
            return {e.subject: e for e in lst.entries}
        merged = dict(self._entries)
        for subject in lst.remove:
            merged.pop(subject, None)
        merged.update({e.subject: e for e in lst.entries})
        return merged

    def _commit(self, lst: ConsentList, kid: bytes, message: bytes, now: float) -> ApplyOutcome:
        new = self._new_entries(lst)
        old = self._entries
        if lst.kind == "delta":  # only what the delta names can change
            removed = [s for s in lst.remove if s in old]
            upserts = [e for e in lst.entries if old.get(e.subject) != e]
        else:
            removed = [s for s in old if s not in new]
            upserts = [e for s, e in new.items() if old.get(s) is not e and old.get(s) != e]
        encoded = {e.subject: _entry_to_cbor(e) for e in upserts}
        affected = frozenset(removed) | frozenset(e.subject for e in upserts)
        # a snapshot replaces the roster (none: no roster); a delta without one keeps the one in force
        keep = lst.gates is None and lst.kind == "delta"
        gates = self._gates if keep else {g.id: g for g in lst.gates or ()}
        keep_tz = lst.timezone is None and lst.kind == "delta"
        timezone = self._timezone if keep_tz else lst.timezone
        if self._place_of(gates) != self.place:
            affected = frozenset(old) | frozenset(new)  # this gate moved: every scoped consent may change
        keys_blob = (
            bytes(cbor2.dumps({"successors": list(lst.keys.successors), "retire": list(lst.keys.retire)}))
            if lst.keys
            else None
        )
        previous = self.version
        details: dict[str, object] = {
            "version": lst.version,
            "previous_version": previous,
            "kind": lst.kind,
            "signer_kid": kid.hex(),
            "list_sha256": _digest_prefix(message),
            "changed_subjects": sorted(affected),
            "withdrawn": sorted(e.subject for e in upserts if e.status == "withdrawn"),
            "removed": sorted(removed),
            # what _finish_key_announcement will pin and retire, known before the commit
            "pinned_keys": [key_id(VerifyKey(pub)).hex() for pub in lst.keys.successors] if lst.keys else [],
            "retired_keys": [
                k.hex()
                for k in (lst.keys.retire if lst.keys else ())
                if k != kid and trust.key_path(self.state, k).exists()
            ],
        }
        with self._transaction():
            if self.audit is not None:  # the list and its audit record are one unit of work
                self._conn.execute(
                    "INSERT INTO pending_audit (details, at, audit_floor) VALUES (?, ?, ?)",
                    (bytes(cbor2.dumps(details, canonical=True)), now, self.audit.head_seq),
                )
            self._conn.executemany("DELETE FROM entries WHERE subject = ?", [(s,) for s in removed])
            self._conn.executemany(
                "INSERT INTO entries (subject, body) VALUES (?, ?) "
                "ON CONFLICT(subject) DO UPDATE SET body = excluded.body",
                [(e.subject, bytes(cbor2.dumps(encoded[e.subject], canonical=True))) for e in upserts],
            )
            if timezone != self._timezone:
                self._conn.execute("DELETE FROM list_settings WHERE name = 'timezone'")
                if timezone is not None:
                    self._conn.execute("INSERT INTO list_settings (name, value) VALUES ('timezone', ?)", (timezone,))
            if gates is not self._gates:
                self._conn.execute("DELETE FROM gates")
                self._conn.executemany(
                    "INSERT INTO gates (id, body) VALUES (?, ?)",
                    [(g.id, bytes(cbor2.dumps(gate_to_cbor(g), canonical=True))) for g in gates.values()],
                )
            self._conn.execute(
                "INSERT INTO meta (id, site, version, kind, issued_at, valid_until, signer_kid, message, applied_at, "
                "keys, keys_done) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "site = excluded.site, version = excluded.version, kind = excluded.kind, "
                "issued_at = excluded.issued_at, valid_until = excluded.valid_until, "
                "signer_kid = excluded.signer_kid, message = excluded.message, applied_at = excluded.applied_at, "
                "keys = excluded.keys, keys_done = excluded.keys_done",
                (
                    lst.site,
                    lst.version,
                    lst.kind,
                    lst.issued_at,
                    lst.valid_until,
                    kid,
                    bytes(message),
                    now,
                    keys_blob,
                    0 if keys_blob else 1,
                ),
            )
        self._info = ListInfo(lst.site, lst.version, lst.kind, lst.issued_at, lst.valid_until, kid, now, bytes(message))
        self._entries = new
        self._gates = gates
        self._timezone = timezone
        self.generation += 1
        raws = self._raw if lst.kind == "delta" else {s: r for s, r in self._raw.items() if s in new}
        for subject in removed:
            raws.pop(subject, None)
        raws.update({s: (encoded[s], new[s]) for s in encoded})
        self._raw = raws
        if any(old[s].credentials for s in removed) or any(
            e.credentials or (e.subject in old and old[e.subject].credentials) for e in upserts
        ):
            self._by_credential = {(g.kind, g.digest): e.subject for e in new.values() for g in e.credentials}
        self._data_version = self._pragma_data_version()
        pinned, retired = self._finish_key_announcement()
        log.info("consent list %s (%s) applied: %s subjects changed", lst.version, lst.kind, len(affected))
        pending = self.audit is not None and not self.finish_pending_audit()
        self._audit_due = pending
        return ApplyOutcome(True, lst.version, lst.kind, previous, affected, pinned, retired, audit_pending=pending)

    # ------------------------------------------------------------------ the consent_applied record

    def finish_pending_audit(self) -> bool:
        """Write the ``consent_applied`` records a full disk held back (by this process or another,
        e.g. ``edge consent apply``), oldest first; True when none is pending any more. Never
        writes one twice: a record already in the log since its list was applied is recognised."""
        if self.audit is None:
            return not self.has_pending_audit()
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT id, details, at, audit_floor FROM pending_audit ORDER BY id"
                ).fetchall()
            except sqlite3.Error:
                return False
            for row_id, blob, at, floor in rows:
                details = cbor2.loads(bytes(blob))
                try:
                    written = any(
                        r.kind == "consent_applied"
                        and r.details.get("version") == details.get("version")
                        and r.details.get("list_sha256") == details.get("list_sha256")
                        for r in self.audit.records(since=int(floor))
                    )
                    if not written:
                        self.audit.append("consent_applied", details, at=float(at))
                except StorageError as exc:
                    log.error(
                        "the consent_applied record of list %s is pending (%s)", details.get("version"), exc.one_line()
                    )
                    return False
                try:
                    with self._transaction():
                        self._conn.execute("DELETE FROM pending_audit WHERE id = ?", (row_id,))
                    self._data_version = self._pragma_data_version()
                except StorageError as exc:  # written; the row goes next time (recognised, not repeated)
                    log.warning("could not clear a pending consent_applied record (%s)", exc.one_line())
                    return False
                if written:
                    log.info("a pending consent_applied record was already in the audit log")
                else:
                    log.info("the pending consent_applied record of list %s is written", details.get("version"))
            return True

    def has_pending_audit(self) -> bool:
        with self._lock:
            try:
                row = self._conn.execute("SELECT 1 FROM pending_audit LIMIT 1").fetchone()
            except sqlite3.Error:
                row = None
            return row is not None

    def _place_of(self, gates: dict[str, Gate]) -> Place:
        gate = gates.get(self.device)
        return Place(self.device, gate.zones if gate is not None else frozenset())

    def _finish_key_announcement(self) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """Pin successors and retire keys announced by the list in force (idempotent, crash-safe)."""
        with self._lock:
            row = self._conn.execute("SELECT keys, keys_done, signer_kid FROM meta WHERE id = 1").fetchone()
            if row is None or row[1] or row[0] is None:
                return (), ()
            announced = cbor2.loads(row[0])
            keys = KeyAnnouncement(tuple(announced["successors"]), tuple(announced["retire"]))
            pinned = tuple(trust.pin(self.state, VerifyKey(pub)) for pub in keys.successors)
            retired: list[bytes] = []
            for kid in keys.retire:
                if kid != bytes(row[2]) and trust.key_path(self.state, kid).exists():
                    trust.retire(self.state, kid)
                    retired.append(kid)
            with self._transaction():
                self._conn.execute("UPDATE meta SET keys_done = 1 WHERE id = 1")
            self._data_version = self._pragma_data_version()
            return pinned, tuple(retired)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            check_write(self.state.consent_db)
            self._conn.execute("BEGIN IMMEDIATE")
            yield
            self._conn.execute("COMMIT")
            HEALTH.succeeded("consent")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            error = storage_error(self.state.consent_db, "consent ledger", exc)
            if isinstance(error, StorageUnavailable):
                HEALTH.failed("consent", error.cause)
            if isinstance(error, (StorageUnavailable, StoreDamaged)):
                raise error from None
            raise StorageError(f"{self.state.consent_db}: cannot write the consent ledger ({exc})") from None
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _audit_rejection(self, exc: ListRejected, message: bytes, now: float) -> None:
        log.warning("consent list rejected: %s", exc.reason)
        if self.audit is not None:
            details: dict[str, Any] = {
                "reason": exc.reason,
                "detail": exc.detail[:200],
                "list_sha256": _digest_prefix(message),
                "size": len(message),
                "version_in_force": self.version,
            }
            try:
                self.audit.append("consent_rejected", details, at=now)
            except StorageError as error:  # the rejection stands; the disk refused its record
                log.error("could not audit a rejected consent list (%s)", error.one_line())


def _salvage(path: Path) -> tuple[bytes, float] | None:
    """The last list (signed bytes) and when it was applied, if a damaged ledger still shows them
    and it is a snapshot (a delta needs the entries of its base, which are not trusted from a
    damaged file: the retained list brings them back)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT kind, message, applied_at FROM meta WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None or row[0] != "snapshot":
        return None
    return bytes(row[1]), float(row[2])
