"""The consent list format: a CBOR body, canonical and strictly validated. Pure: bytes in, bytes out.

A list is either a full ``snapshot`` or a ``delta`` naming the version it applies to (``base``).
The body is carried as the payload of a COSE_Sign1 message signed by the site's consent authority
(``edge.consent.signing``); this module knows nothing about signatures.

Body (CBOR map, text keys, canonical encoding as RFC 8949 section 4.2.3 "length-first")::

    format       1
    site         text          the site id the list is for
    kind         "snapshot" | "delta"
    version      uint          strictly increasing per site
    base         uint          (delta only) the version the delta applies to
    issued_at    uint          seconds since the epoch
    valid_until  uint          seconds since the epoch; after it plus the device's grace period the
                               device stops biometric matching and enrolment (fail closed)
    entries      [entry]       snapshot: every subject; delta: entries added or replaced
    remove       [text]        (delta only) subjects dropped from the list altogether
    keys         {successors: [bytes 32], retire: [bytes 8]}   optional key rotation (see docs)
    gates        [gate]        (format 2, optional) the site's gates: who may send template
                               parcels, where they stand; a snapshot without it has no roster, a
                               delta without it keeps the roster in force

    gate = {id: "gw-" + 16 hex, public_key: bytes 32, box_key: bytes 32 | null, zones: [text]}

    entry = {subject: text, purposes: [text], modalities: ["face" | "fingerprint"],
             granted_at: uint, expires_at: uint | null, status: "active" | "withdrawn",
             credentials: [{kind: "card" | "pin" | "qr", digest: bytes 32}],
             ? scope: [text],                                       (format 2 only)
             ? schedule: [{days: [0..6], from: minute, to: minute}], (format 2 only)
             ? panel: bytes}                                        (format 2 only)
    timezone     text          (format 2, optional) IANA zone the schedules are in; default UTC

``schedule``: the times of week the person may pass at all (any modality), as windows of minutes
after local midnight (``from`` < ``to`` <= 1440) on the listed weekdays (0 = Monday); absent:
always. ``panel``: the number the site's access panel knows the person by, sealed with the site
credential key (``edge.credentials.panel_number``): gates in reader mode send it to the panel.

``format`` is 1, or 2 when any entry carries a ``scope`` or the list carries ``gates``. A scope
names the zones (``lobby``, ``car-park``) and/or gate device ids (``gw-`` + 16 hex) where the
person's biometric consent applies; an entry without one covers the whole site. The ``gates``
roster says which zones each gate stands in (the site decides, not the gate) and carries each
gate's identity key and template-sync key (``edge.sync``). A gate holds and matches a person's
templates only where the scope covers it (``Place.covers``); the card/PIN/QR path is not scoped.
The authority writes format 1 whenever it can, so terminals that predate scopes keep accepting
those lists.

Subject ids are pseudonymous (the authority's choice, never a name or document number). Credential
values are never carried: ``digest`` is a keyed BLAKE2b of the value (``edge.credentials.hashing``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cbor2

from edge.crypto import strictcbor
from edge.errors import IntegrityError
from edge.modality import BIOMETRIC, CREDENTIALS

FORMAT_VERSION = 1
FORMAT_SCOPED = 2  # entries may carry a scope
FORMATS = frozenset({FORMAT_VERSION, FORMAT_SCOPED})
MAX_SCOPE = 64
MAX_GATES = 10_000
MAX_WINDOWS = 32
MAX_PANEL = 160
_TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,31}(/[A-Za-z0-9_+\-]{1,32}){0,2}")
MODALITIES = frozenset(m.value for m in BIOMETRIC)
STATUSES = frozenset({"active", "withdrawn"})
CREDENTIAL_KINDS = frozenset(m.value for m in CREDENTIALS)
DIGEST_SIZE = 32
KID_SIZE = 8
PUBLIC_KEY_SIZE = 32
MAX_ENTRIES = 1_000_000

_SUBJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
_PURPOSE_RE = re.compile(r"[a-z0-9][a-z0-9._\-]*(:[A-Za-z0-9._\-]+)*")
_SITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
_ZONE_RE = re.compile(r"[a-z0-9][a-z0-9._\-]{0,31}")
_GATE_RE = re.compile(r"gw-[0-9a-f]{16}")

ListKind = Literal["snapshot", "delta"]


class ListFormatError(IntegrityError):
    """A list body is not a valid consent list. ``reason`` is short and never names a subject."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"consent list body rejected: {reason}")


def valid_subject(subject: str) -> bool:
    return bool(_SUBJECT_RE.fullmatch(subject))


def valid_site(site: str) -> bool:
    return bool(_SITE_RE.fullmatch(site))


def valid_zone(zone: str) -> bool:
    """A zone name (lower case, digits, ``. _ -``; at most 32) as a gate's config and a scope name it."""
    return bool(_ZONE_RE.fullmatch(zone)) and not _GATE_RE.fullmatch(zone)


def valid_scope_item(item: str) -> bool:
    """A zone name or a gate's device id."""
    return bool(_ZONE_RE.fullmatch(item) or _GATE_RE.fullmatch(item))


@dataclass(frozen=True)
class Place:
    """Where a gate stands: its device id and the zones it belongs to (``[device] zones``).

    The default place (no id, no zones) is covered only by entries without a scope: a ledger that
    does not know its gate fails closed for scoped consent.
    """

    device: str = ""
    zones: frozenset[str] = frozenset()

    def covers(self, scope: frozenset[str] | None) -> bool:
        """Whether consent with ``scope`` (None: the whole site) applies at this gate."""
        return scope is None or bool(scope & self.zones) or (bool(self.device) and self.device in scope)


@dataclass(frozen=True)
class CredentialGrant:
    """A non-biometric credential a subject may use: its kind and the keyed digest of its value."""

    kind: str
    digest: bytes

    def __repr__(self) -> str:  # digests are not secrets, but keep reprs short and uniform
        return f"CredentialGrant({self.kind!r}, {self.digest[:4].hex()}…)"


@dataclass(frozen=True)
class Entry:
    subject: str
    purposes: frozenset[str]
    modalities: frozenset[str]
    granted_at: int
    expires_at: int | None
    status: str
    credentials: tuple[CredentialGrant, ...] = ()
    #: zones and gate ids the biometric consent covers; None: the whole site
    scope: frozenset[str] | None = None
    #: when the person may pass (any modality); None: always
    schedule: tuple[Window, ...] | None = None
    #: the panel number, sealed with the site credential key; None: none assigned
    panel: bytes | None = field(default=None, repr=False)

    def in_schedule(self, weekday: int, minute: int) -> bool:
        """Whether local ``weekday`` (0 = Monday) and ``minute`` after midnight fall in a window."""
        return self.schedule is None or any(w.covers(weekday, minute) for w in self.schedule)

    def consent_active(self, now: float) -> bool:
        """Biometric consent in force at ``now``: active status, granted, not yet expired."""
        if self.status != "active" or now < self.granted_at:
            return False
        return self.expires_at is None or now < self.expires_at

    def allows(self, modality: str, purpose: str | None, now: float, place: Place | None = None) -> bool:
        """Biometric consent for ``modality`` and ``purpose`` at ``now``, at ``place`` when one is given."""
        if not self.consent_active(now) or modality not in self.modalities:
            return False
        if place is not None and not place.covers(self.scope):
            return False
        return purpose is None or purpose in self.purposes

    def __repr__(self) -> str:  # subject ids stay out of reprs that could reach a log line
        return f"Entry(status={self.status!r}, modalities={sorted(self.modalities)}, purposes={len(self.purposes)})"


@dataclass(frozen=True)
class Window:
    """Weekdays (0 = Monday) and a span of minutes after local midnight, ``start`` <= m < ``end``."""

    days: frozenset[int]
    start: int
    end: int

    def covers(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end


@dataclass(frozen=True)
class Passback:
    """A gate's part in an anti-passback area: ``in`` gates lead into ``area``, ``out`` gates out."""

    area: str
    direction: Literal["in", "out"]


@dataclass(frozen=True)
class Gate:
    """One gate of the site as the roster in the list names it."""

    id: str
    public_key: bytes = field(repr=False)
    box_key: bytes | None = field(default=None, repr=False)
    zones: frozenset[str] = frozenset()
    #: anti-passback: the area this gate leads into or out of, and which way; None: no passback
    passback: Passback | None = None

    def place(self) -> Place:
        return Place(self.id, self.zones)


@dataclass(frozen=True)
class KeyAnnouncement:
    """Key rotation carried in a list: public keys to pin next, key ids to retire."""

    successors: tuple[bytes, ...] = ()
    retire: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.successors or self.retire)


@dataclass(frozen=True)
class ConsentList:
    site: str
    kind: ListKind
    version: int
    issued_at: int
    valid_until: int
    entries: tuple[Entry, ...]
    base: int | None = None
    remove: tuple[str, ...] = ()
    keys: KeyAnnouncement = field(default_factory=KeyAnnouncement)
    #: the gate roster; None: the list carries none (a delta keeps the one in force)
    gates: tuple[Gate, ...] | None = None
    #: the IANA time zone schedules are written in; None: UTC
    timezone: str | None = None

    def __repr__(self) -> str:
        return (
            f"ConsentList(site={self.site!r}, kind={self.kind!r}, version={self.version}, "
            f"entries={len(self.entries)}, remove={len(self.remove)})"
        )


# --------------------------------------------------------------------------- encoding


def _entry_to_cbor(entry: Entry) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "subject": entry.subject,
        "purposes": sorted(entry.purposes),
        "modalities": sorted(entry.modalities),
        "granted_at": entry.granted_at,
        "expires_at": entry.expires_at,
        "status": entry.status,
        "credentials": [
            {"kind": grant.kind, "digest": grant.digest}
            for grant in sorted(entry.credentials, key=lambda g: (g.kind, g.digest))
        ],
    }
    if entry.scope is not None:
        raw["scope"] = sorted(entry.scope)
    if entry.schedule is not None:
        raw["schedule"] = [
            {"days": sorted(w.days), "from": w.start, "to": w.end}
            for w in sorted(entry.schedule, key=lambda w: (sorted(w.days), w.start, w.end))
        ]
    if entry.panel is not None:
        raw["panel"] = entry.panel
    return raw


def gate_to_cbor(gate: Gate) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": gate.id,
        "public_key": gate.public_key,
        "box_key": gate.box_key,
        "zones": sorted(gate.zones),
    }
    if gate.passback is not None:
        raw["passback"] = {"area": gate.passback.area, "direction": gate.passback.direction}
    return raw


def encode_body(lst: ConsentList) -> bytes:
    """The canonical CBOR body of ``lst``; validates it first so the authority cannot sign junk."""
    scoped = (
        lst.gates is not None
        or lst.timezone is not None
        or any(e.scope is not None or e.schedule is not None or e.panel is not None for e in lst.entries)
    )
    body: dict[str, Any] = {
        "format": FORMAT_SCOPED if scoped else FORMAT_VERSION,
        "site": lst.site,
        "kind": lst.kind,
        "version": lst.version,
        "issued_at": lst.issued_at,
        "valid_until": lst.valid_until,
        "entries": [_entry_to_cbor(e) for e in sorted(lst.entries, key=lambda e: e.subject)],
    }
    if lst.kind == "delta":
        body["base"] = lst.base
        body["remove"] = sorted(lst.remove)
    if lst.keys:
        body["keys"] = {"successors": list(lst.keys.successors), "retire": list(lst.keys.retire)}
    if lst.gates is not None:
        body["gates"] = [gate_to_cbor(g) for g in sorted(lst.gates, key=lambda g: g.id)]
    if lst.timezone is not None:
        body["timezone"] = lst.timezone
    data = bytes(cbor2.dumps(body, canonical=True))
    decode_body(data)  # the same checks the device applies
    return data


# --------------------------------------------------------------------------- decoding


def _map(value: object, what: str, required: set[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ListFormatError(f"{what} is not a map")
    keys = set(value)
    if not all(isinstance(k, str) for k in keys):
        raise ListFormatError(f"{what} has a non-text key")
    missing = required - keys
    if missing:
        raise ListFormatError(f"{what} lacks {', '.join(sorted(missing))}")
    unknown = keys - required - optional
    if unknown:
        raise ListFormatError(f"{what} has unknown key(s) {', '.join(sorted(unknown))}")
    return value


def _uint(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**63:
        raise ListFormatError(f"{what} is not an unsigned integer")
    return value


def _text_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ListFormatError(f"{what} is not a list of text")
    if value != sorted(set(value)):
        raise ListFormatError(f"{what} is not sorted and unique")
    return value


def _entry(raw: object, scoped: bool = False) -> Entry:
    optional = frozenset({"scope", "schedule", "panel"}) if scoped else frozenset()
    m = _map(
        raw,
        "entry",
        {"subject", "purposes", "modalities", "granted_at", "expires_at", "status", "credentials"},
        optional,
    )
    subject = m["subject"]
    if not isinstance(subject, str) or not valid_subject(subject):
        raise ListFormatError("entry subject is not a valid pseudonymous id")
    purposes = _text_list(m["purposes"], "entry purposes")
    if not purposes or not all(_PURPOSE_RE.fullmatch(p) for p in purposes):
        raise ListFormatError("entry purposes are empty or malformed")
    modalities = _text_list(m["modalities"], "entry modalities")
    if not set(modalities) <= MODALITIES:
        raise ListFormatError("entry names an unknown modality")
    granted_at = _uint(m["granted_at"], "entry granted_at")
    expires_at = None if m["expires_at"] is None else _uint(m["expires_at"], "entry expires_at")
    if expires_at is not None and expires_at <= granted_at:
        raise ListFormatError("entry expires before it is granted")
    status = m["status"]
    if status not in STATUSES:
        raise ListFormatError("entry status is neither active nor withdrawn")
    creds_raw = m["credentials"]
    if not isinstance(creds_raw, list):
        raise ListFormatError("entry credentials is not a list")
    grants: list[CredentialGrant] = []
    for c in creds_raw:
        cm = _map(c, "credential", {"kind", "digest"})
        if cm["kind"] not in CREDENTIAL_KINDS:
            raise ListFormatError("credential kind is not card, pin or qr")
        if not isinstance(cm["digest"], bytes) or len(cm["digest"]) != DIGEST_SIZE:
            raise ListFormatError(f"credential digest is not {DIGEST_SIZE} bytes")
        grants.append(CredentialGrant(cm["kind"], cm["digest"]))
    keys = [(g.kind, g.digest) for g in grants]
    if keys != sorted(set(keys)):
        raise ListFormatError("entry credentials are not sorted and unique")
    scope: frozenset[str] | None = None
    if "scope" in m:
        items = _text_list(m["scope"], "entry scope")
        if not items or len(items) > MAX_SCOPE or not all(valid_scope_item(i) for i in items):
            raise ListFormatError("entry scope is empty, too long, or names something that is neither zone nor gate")
        scope = frozenset(items)
    schedule = _schedule(m["schedule"]) if "schedule" in m else None
    panel: bytes | None = None
    if "panel" in m:
        panel = m["panel"]
        if not isinstance(panel, bytes) or not 41 <= len(panel) <= MAX_PANEL:
            raise ListFormatError("entry panel is not a sealed panel number")
    return Entry(
        subject,
        frozenset(purposes),
        frozenset(modalities),
        granted_at,
        expires_at,
        status,
        tuple(grants),
        scope,
        schedule,
        panel,
    )


def _schedule(raw: object) -> tuple[Window, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_WINDOWS:
        raise ListFormatError(f"entry schedule is not a list of 1 to {MAX_WINDOWS} windows")
    windows: list[Window] = []
    for item in raw:
        w = _map(item, "schedule window", {"days", "from", "to"})
        days = w["days"]
        if (
            not isinstance(days, list)
            or not days
            or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days)
            or days != sorted(set(days))
        ):
            raise ListFormatError("schedule days are not sorted unique weekdays 0..6")
        start, end = _uint(w["from"], "schedule from"), _uint(w["to"], "schedule to")
        if not start < end <= 1440:
            raise ListFormatError("a schedule window must start before it ends, within one day")
        windows.append(Window(frozenset(days), start, end))
    return tuple(windows)


def gate_from_cbor(raw: object) -> Gate:
    """One roster row; its id must be the one its public key derives (``edge.crypto.keys.device_id``)."""
    m = _map(raw, "gate", {"id", "public_key", "box_key", "zones"}, frozenset({"passback"}))
    gid, public, box = m["id"], m["public_key"], m["box_key"]
    if not isinstance(gid, str) or not _GATE_RE.fullmatch(gid):
        raise ListFormatError("gate id is not gw- and 16 hex digits")
    if not isinstance(public, bytes) or len(public) != PUBLIC_KEY_SIZE:
        raise ListFormatError("gate public_key is not 32 bytes")
    if gid != "gw-" + hashlib.sha256(public).hexdigest()[:16]:
        raise ListFormatError("gate id does not belong to its public key")
    if box is not None and (not isinstance(box, bytes) or len(box) != PUBLIC_KEY_SIZE):
        raise ListFormatError("gate box_key is not 32 bytes")
    zones = _text_list(m["zones"], "gate zones")
    if len(zones) > MAX_SCOPE or not all(valid_zone(z) for z in zones):
        raise ListFormatError("gate zones are too many or not zone names")
    passback: Passback | None = None
    if "passback" in m:
        pb = _map(m["passback"], "gate passback", {"area", "direction"})
        area, direction = pb["area"], pb["direction"]
        if not isinstance(area, str) or not valid_zone(area):
            raise ListFormatError("gate passback area is not a zone name")
        if direction not in ("in", "out"):
            raise ListFormatError("gate passback direction is neither in nor out")
        passback = Passback(area, "in" if direction == "in" else "out")
    return Gate(gid, public, box, frozenset(zones), passback)


def _gates(raw: object) -> tuple[Gate, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_GATES:
        raise ListFormatError("gates is not a list (or is too long)")
    gates = tuple(gate_from_cbor(g) for g in raw)
    ids = [g.id for g in gates]
    if ids != sorted(set(ids)):
        raise ListFormatError("gates are not sorted by id or repeat a gate")
    return gates


def _keys(raw: object) -> KeyAnnouncement:
    m = _map(raw, "keys", {"successors", "retire"})
    succ, retire = m["successors"], m["retire"]
    if not isinstance(succ, list) or not all(isinstance(k, bytes) and len(k) == PUBLIC_KEY_SIZE for k in succ):
        raise ListFormatError("keys.successors is not a list of 32-byte public keys")
    if not isinstance(retire, list) or not all(isinstance(k, bytes) and len(k) == KID_SIZE for k in retire):
        raise ListFormatError("keys.retire is not a list of 8-byte key ids")
    if len(set(succ)) != len(succ) or len(set(retire)) != len(retire):
        raise ListFormatError("keys lists repeat a key")
    return KeyAnnouncement(tuple(succ), tuple(retire))


def _known_entry(raw: object, known: Mapping[str, tuple[dict[str, Any], Entry]], scoped: bool) -> Entry | None:
    """The already-validated entry when ``raw`` is exactly its encoded form (skips re-validation)."""
    if not isinstance(raw, dict) or ("scope" in raw and not scoped):
        return None  # a scope in a format-1 list: validated (and refused) in full
    subject = raw.get("subject")
    hit = known.get(subject) if isinstance(subject, str) else None
    if hit is None:
        return None
    # == treats 1, 1.0 and True alike: the two numeric fields must be exact ints to reuse a result
    granted, expires = raw.get("granted_at"), raw.get("expires_at")
    if type(granted) is not int or (expires is not None and type(expires) is not int):
        return None
    return hit[1] if hit[0] == raw else None


def decode_body(data: bytes, known: Mapping[str, tuple[dict[str, Any], Entry]] | None = None) -> ConsentList:
    """Parse and validate a list body; raises ``ListFormatError`` with a specific reason.

    ``known`` maps subjects to (encoded form, entry) already validated (the list in force): an
    identical entry in a new snapshot is reused instead of validated again, which keeps a 10k-entry
    snapshot that changes one subject cheap to apply.
    """
    try:
        raw = strictcbor.loads(data, strictcbor.CONSENT_BODY)
    except strictcbor.CborProfileError as exc:
        raise ListFormatError(f"body is not CBOR (strict profile: {exc.reason})") from None
    base_keys = {"format", "site", "kind", "version", "issued_at", "valid_until", "entries"}
    m = _map(raw, "body", base_keys, frozenset({"base", "remove", "keys", "gates", "timezone"}))
    list_format = m["format"]
    if isinstance(list_format, bool) or list_format not in FORMATS:
        raise ListFormatError("unsupported list format")
    scoped = list_format == FORMAT_SCOPED
    site = m["site"]
    if not isinstance(site, str) or not valid_site(site):
        raise ListFormatError("site is not a valid site id")
    kind = m["kind"]
    if kind not in ("snapshot", "delta"):
        raise ListFormatError("kind is neither snapshot nor delta")
    version = _uint(m["version"], "version")
    if version == 0:
        raise ListFormatError("version must be at least 1")
    issued_at = _uint(m["issued_at"], "issued_at")
    valid_until = _uint(m["valid_until"], "valid_until")
    if valid_until <= issued_at:
        raise ListFormatError("valid_until is not after issued_at")
    raw_entries = m["entries"]
    if not isinstance(raw_entries, list) or len(raw_entries) > MAX_ENTRIES:
        raise ListFormatError("entries is not a list (or is too long)")
    if known:
        entries = tuple(_known_entry(e, known, scoped) or _entry(e, scoped) for e in raw_entries)
    else:
        entries = tuple(_entry(e, scoped) for e in raw_entries)
    subjects = [e.subject for e in entries]
    if subjects != sorted(set(subjects)):
        raise ListFormatError("entries are not sorted by subject or repeat a subject")
    seen: set[tuple[str, bytes]] = set()
    for entry in entries:
        for grant in entry.credentials:
            if (grant.kind, grant.digest) in seen:
                raise ListFormatError("two entries share one credential")
            seen.add((grant.kind, grant.digest))
    base: int | None = None
    remove: tuple[str, ...] = ()
    if kind == "delta":
        if "base" not in m or "remove" not in m:
            raise ListFormatError("delta lacks base or remove")
        base = _uint(m["base"], "base")
        if base >= version:
            raise ListFormatError("delta base is not below its version")
        removed = _text_list(m["remove"], "remove")
        if not all(valid_subject(s) for s in removed) or set(removed) & set(subjects):
            raise ListFormatError("remove is malformed or overlaps entries")
        remove = tuple(removed)
    elif "base" in m or "remove" in m:
        raise ListFormatError("snapshot carries delta fields")
    keys = _keys(m["keys"]) if "keys" in m else KeyAnnouncement()
    if "keys" in m and not keys:
        raise ListFormatError("keys is present but empty")
    gates: tuple[Gate, ...] | None = None
    if "gates" in m:
        if not scoped:
            raise ListFormatError("a gate roster needs list format 2")
        gates = _gates(m["gates"])
    timezone: str | None = None
    if "timezone" in m:
        timezone = m["timezone"]
        if not scoped or not isinstance(timezone, str) or not _TZ_RE.fullmatch(timezone):
            raise ListFormatError("timezone is not an IANA zone name (or the list is not format 2)")
    # The encoding itself is not re-checked here: the authority encodes canonically (encode_body),
    # the signature makes the bytes its own, and re-encoding a 10k-entry body would cost a third
    # of the time a device spends applying it.
    return ConsentList(site, kind, version, issued_at, valid_until, entries, base, remove, keys, gates, timezone)


def make_entry(
    subject: str,
    purposes: Iterable[str],
    modalities: Iterable[str],
    granted_at: int,
    expires_at: int | None = None,
    status: str = "active",
    credentials: Iterable[CredentialGrant] = (),
    scope: Iterable[str] | None = None,
    schedule: Iterable[Window] | None = None,
    panel: bytes | None = None,
) -> Entry:
    return Entry(
        subject,
        frozenset(purposes),
        frozenset(modalities),
        granted_at,
        expires_at,
        status,
        tuple(credentials),
        None if scope is None else frozenset(scope),
        None if schedule is None else tuple(schedule),
        panel,
    )


def entries_by_subject(entries: Iterable[Entry]) -> Mapping[str, Entry]:
    return {e.subject: e for e in entries}
