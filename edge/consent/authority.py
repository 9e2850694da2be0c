"""The site's consent authority: keys, the roster it signs, and the lists it issues.

An authority directory holds::

    keys/<kid>.key                   Ed25519 signing keys (0600), the active one and any successor
    consent-authority-<kid>.pub      the public keys to pin on devices (hex)
    credential.key                   the site's credential key (0600), installed on every device as
                                     trust/consent-credential.key; card/PIN/QR values are hashed with it
    state.json                       site, last version, active/successor/retiring key ids, roster
    lists/<site>-v<N>.cose           every list issued (snapshot or delta)

The roster keeps pseudonymous subject ids and credential digests only: raw card numbers, PINs and
QR codes from the CSV/JSON input are hashed on the way in and never written.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from edge.consent.listformat import (
    MAX_SCOPE,
    MAX_WINDOWS,
    MODALITIES,
    ConsentList,
    CredentialGrant,
    Entry,
    Gate,
    KeyAnnouncement,
    ListFormatError,
    ListKind,
    Window,
    _entry,
    _entry_to_cbor,
    gate_from_cbor,
    valid_scope_item,
    valid_site,
    valid_subject,
)
from edge.consent.signing import MAX_VERSION, sign_list
from edge.credentials.hashing import KEY_SIZE, CredentialFormatError, credential_digest
from edge.credentials.panel_number import MAX_NUMBER as MAX_PANEL_NUMBER
from edge.credentials.panel_number import seal_panel_number
from edge.crypto.keys import key_id, load_signing_key, read_secret, write_secret
from edge.errors import ConsentError, StorageError
from edge.modality import CREDENTIALS

log = logging.getLogger(__name__)

DEFAULT_VALID_FOR_S = 7 * 86400


class RosterError(ConsentError):
    """The roster input (CSV or JSON) is invalid: ``where`` is file:row, never a subject's data."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


@dataclass
class AuthorityState:
    site: str
    version: int
    active_kid: str
    successor_kid: str | None
    retiring_kid: str | None
    entries: dict[str, Entry]
    #: the site's gate roster carried in every list (None: lists carry none)
    gates: dict[str, Gate] | None = None
    #: the IANA zone schedules are written in (None: UTC, not carried)
    timezone: str | None = None

    def to_json(self) -> dict[str, Any]:
        def entry_json(e: Entry) -> dict[str, Any]:
            raw = _entry_to_cbor(e)
            raw["credentials"] = [{"kind": c["kind"], "digest": c["digest"].hex()} for c in raw["credentials"]]
            if "panel" in raw:
                raw["panel"] = raw["panel"].hex()
            return raw

        return {
            "site": self.site,
            "version": self.version,
            "active_kid": self.active_kid,
            "successor_kid": self.successor_kid,
            "retiring_kid": self.retiring_kid,
            "entries": [entry_json(self.entries[s]) for s in sorted(self.entries)],
            "gates": None
            if self.gates is None
            else [
                {
                    "id": g.id,
                    "public_key": g.public_key.hex(),
                    "box_key": g.box_key.hex() if g.box_key is not None else None,
                    "zones": sorted(g.zones),
                    **(
                        {"passback": {"area": g.passback.area, "direction": g.passback.direction}}
                        if g.passback is not None
                        else {}
                    ),
                }
                for g in sorted(self.gates.values(), key=lambda g: g.id)
            ],
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AuthorityState:
        entries: dict[str, Entry] = {}
        for item in doc["entries"]:
            raw = dict(item)
            raw["credentials"] = [{"kind": c["kind"], "digest": bytes.fromhex(c["digest"])} for c in raw["credentials"]]
            if "panel" in raw:
                raw["panel"] = bytes.fromhex(raw["panel"])
            entry = _entry(raw, scoped=True)
            entries[entry.subject] = entry
        gates: dict[str, Gate] | None = None
        if doc.get("gates") is not None:
            gates = {}
            for item in doc["gates"]:
                box = item.get("box_key")
                gate = gate_from_cbor(
                    {
                        "id": item["id"],
                        "public_key": bytes.fromhex(item["public_key"]),
                        "box_key": bytes.fromhex(box) if box is not None else None,
                        "zones": list(item["zones"]),
                        **({"passback": dict(item["passback"])} if item.get("passback") else {}),
                    }
                )
                gates[gate.id] = gate
        return cls(
            str(doc["site"]),
            int(doc["version"]),
            str(doc["active_kid"]),
            doc.get("successor_kid"),
            doc.get("retiring_kid"),
            entries,
            gates,
            doc.get("timezone"),
        )


class Authority:
    def __init__(self, root: Path) -> None:
        self.root = root

    # ------------------------------------------------------------------ files

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def credential_key_path(self) -> Path:
        return self.root / "credential.key"

    def key_file(self, kid_hex: str) -> Path:
        return self.root / "keys" / f"{kid_hex}.key"

    def public_file(self, kid_hex: str) -> Path:
        return self.root / f"consent-authority-{kid_hex}.pub"

    def lists_dir(self) -> Path:
        return self.root / "lists"

    def load_state(self) -> AuthorityState:
        try:
            return AuthorityState.from_json(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            raise StorageError(
                f"{self.state_path} is missing", hint="run `edge-site consent keygen --site SITE` first"
            ) from None
        except (ValueError, KeyError, TypeError, RecursionError, ListFormatError) as exc:
            raise StorageError(f"{self.state_path} is corrupt ({exc.__class__.__name__})") from None

    def save_state(self, state: AuthorityState) -> None:
        tmp = self.state_path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.state_path)

    def signing_key(self, kid_hex: str) -> SigningKey:
        return load_signing_key(self.key_file(kid_hex))

    def credential_key(self) -> bytes:
        raw = read_secret(self.credential_key_path)
        if len(raw) != KEY_SIZE:
            raise StorageError(f"{self.credential_key_path} is not a {KEY_SIZE}-byte key")
        return raw

    def _new_key(self) -> str:
        self.root.joinpath("keys").mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = SigningKey.generate()
        kid_hex = key_id(probe.verify_key).hex()
        write_secret(self.key_file(kid_hex), bytes(probe))
        self.public_file(kid_hex).write_text(bytes(probe.verify_key).hex() + "\n")
        return kid_hex

    # ------------------------------------------------------------------ keys

    def keygen(self, site: str) -> str:
        """Create the authority: a signing key, the credential key and an empty roster."""
        if not valid_site(site):
            raise ConsentError(f"{site!r} is not a valid site id (letters, digits, . _ -; at most 64)")
        if self.state_path.exists():
            raise StorageError(f"{self.state_path} already exists", hint="use --rotate to start a key rotation")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        kid_hex = self._new_key()
        write_secret(self.credential_key_path, secrets.token_bytes(KEY_SIZE))
        self.save_state(AuthorityState(site, 0, kid_hex, None, None, {}))
        return kid_hex

    def rotate(self) -> str:
        """Step 1: create a successor key; the next list (signed by the active key) announces it."""
        state = self.load_state()
        if state.successor_kid:
            raise ConsentError("a successor key already exists; issue a list, then --finish-rotation")
        state.successor_kid = self._new_key()
        self.save_state(state)
        return state.successor_kid

    def finish_rotation(self) -> str:
        """Step 2: sign with the successor from now on; the next list retires the old key."""
        state = self.load_state()
        if not state.successor_kid:
            raise ConsentError("no successor key to switch to; run keygen --rotate first")
        state.retiring_kid, state.active_kid, state.successor_kid = state.active_kid, state.successor_kid, None
        self.save_state(state)
        return state.active_kid

    # ------------------------------------------------------------------ issuing

    def _sign(
        self,
        state: AuthorityState,
        kind: ListKind,
        entries: Iterable[Entry],
        now: float,
        valid_for_s: float,
        base: int | None = None,
        remove: Iterable[str] = (),
    ) -> tuple[bytes, Path]:
        successors: tuple[bytes, ...] = ()
        if state.successor_kid:
            successors = (bytes(self.signing_key(state.successor_kid).verify_key),)
        retire = (bytes.fromhex(state.retiring_kid),) if state.retiring_kid else ()
        version = state.version + 1
        if version > MAX_VERSION:
            raise ConsentError(
                f"the next version would pass the ceiling {MAX_VERSION} devices accept",
                hint="the roster's version was edited by hand; restore state.json from its backup",
            )
        lst = ConsentList(
            site=state.site,
            kind=kind,
            version=version,
            issued_at=int(now),
            valid_until=int(now + valid_for_s),
            entries=tuple(entries),
            base=base,
            remove=tuple(sorted(remove)),
            keys=KeyAnnouncement(successors, retire),
            gates=None if state.gates is None else tuple(state.gates.values()),
            timezone=state.timezone,
        )
        message = sign_list(self.signing_key(state.active_kid), lst)
        self.lists_dir().mkdir(parents=True, exist_ok=True)
        suffix = "-delta" if kind == "delta" else ""
        path = self.lists_dir() / f"{state.site}-v{version}{suffix}.cose"
        path.write_bytes(message)
        state.version = version
        return message, path

    def issue(
        self, roster: Mapping[str, Entry], *, now: float, valid_for_s: float = DEFAULT_VALID_FOR_S
    ) -> tuple[bytes, Path]:
        """A snapshot of ``roster`` (which replaces the previous roster) as the next version."""
        state = self.load_state()
        message, path = self._sign(state, "snapshot", roster.values(), now, valid_for_s)
        state.entries = dict(roster)
        self.save_state(state)
        return message, path

    def set_timezone(self, name: str | None) -> None:
        """The IANA zone every later list's schedules are written in (None: UTC)."""
        if name is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConsentError(
                    f"unknown time zone {name[:64]!r}", hint="an IANA name, e.g. Asia/Shanghai"
                ) from None
        state = self.load_state()
        state.timezone = name
        self.save_state(state)

    def set_gates(self, gates: Iterable[Gate]) -> None:
        """The site's gate roster (ids, keys, zones) that every later list carries."""
        state = self.load_state()
        state.gates = {g.id: g for g in gates}
        self.save_state(state)

    def reissue(self, *, now: float, valid_for_s: float = DEFAULT_VALID_FOR_S) -> tuple[bytes, Path]:
        """A fresh snapshot of the current roster (to renew validity or carry a key announcement)."""
        return self.issue(self.load_state().entries, now=now, valid_for_s=valid_for_s)

    def issue_delta(
        self,
        upserts: Iterable[Entry],
        remove: Iterable[str] = (),
        *,
        now: float,
        valid_for_s: float = DEFAULT_VALID_FOR_S,
    ) -> tuple[bytes, Path]:
        """A delta on the last version: entries added or replaced, subjects removed."""
        state = self.load_state()
        upserts = list(upserts)
        removed = sorted(set(remove))
        roster = dict(state.entries)
        for subject in removed:
            roster.pop(subject, None)
        roster.update({e.subject: e for e in upserts})
        message, path = self._sign(state, "delta", upserts, now, valid_for_s, base=state.version, remove=removed)
        state.entries = roster
        self.save_state(state)
        return message, path

    def withdraw(
        self, subject: str, *, now: float, delta: bool = False, valid_for_s: float = DEFAULT_VALID_FOR_S
    ) -> tuple[bytes, Path]:
        """Mark ``subject`` withdrawn (credentials kept: the non-biometric path stays open)."""
        state = self.load_state()
        entry = state.entries.get(subject)
        if entry is None:
            raise ConsentError("that subject is not in the roster", hint="check the pseudonymous id")
        updated = Entry(
            entry.subject,
            entry.purposes,
            entry.modalities,
            entry.granted_at,
            entry.expires_at,
            "withdrawn",
            entry.credentials,
            entry.scope,
            entry.schedule,
            entry.panel,
        )
        roster = dict(state.entries)
        roster[subject] = updated
        if delta:
            message, path = self._sign(state, "delta", [updated], now, valid_for_s, base=state.version)
        else:
            message, path = self._sign(state, "snapshot", roster.values(), now, valid_for_s)
        state.entries = roster
        self.save_state(state)
        return message, path

    # ------------------------------------------------------------------ roster input

    def read_roster(self, path: Path, *, now: float) -> dict[str, Entry]:
        """Entries from a CSV or JSON roster; credential values are hashed with the site key."""
        key = self.credential_key()
        if path.suffix.lower() == ".json":
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError, RecursionError) as exc:
                raise RosterError(str(path), f"not readable JSON ({exc.__class__.__name__})") from None
            rows = doc.get("entries") if isinstance(doc, dict) else doc
            if not isinstance(rows, list):
                raise RosterError(str(path), 'expected {"entries": [...]} or a list of entries')
            items = [(f"{path}: entry {i + 1}", row) for i, row in enumerate(rows)]
        else:
            try:
                with path.open(newline="") as handle:
                    reader = csv.DictReader(handle)
                    items = [(f"{path}:{i + 2}", dict(row)) for i, row in enumerate(reader)]
            except (OSError, csv.Error, UnicodeDecodeError) as exc:
                raise RosterError(str(path), f"not readable CSV ({exc.__class__.__name__})") from None
        roster: dict[str, Entry] = {}
        for where, row in items:
            if not isinstance(row, Mapping) or not all(isinstance(k, str) for k in row):
                raise RosterError(where, "is not an object of named columns")
            entry = _roster_entry(where, row, key, now)
            if entry.subject in roster:
                raise RosterError(where, "repeats a subject id that appears earlier")
            roster[entry.subject] = entry
        seen: dict[tuple[str, bytes], str] = {}
        for where, entry in zip((w for w, _ in items), roster.values(), strict=True):
            for grant in entry.credentials:
                if (grant.kind, grant.digest) in seen:
                    raise RosterError(where, f"its {grant.kind} is already given to another subject")
                seen[(grant.kind, grant.digest)] = entry.subject
        return roster


def _split(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).replace(",", ";").split(";") if part.strip()]


def _time(where: str, name: str, value: object, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value < 2**53:
            raise RosterError(where, f"{name} is out of range")
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RosterError(where, f"{name} is neither epoch seconds nor an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise RosterError(where, f"{name} needs a time zone (e.g. 2026-01-31T00:00:00Z)")
    return int(parsed.timestamp())


def _roster_entry(where: str, row: Mapping[str, Any], key: bytes, now: float) -> Entry:
    known = {
        "subject",
        "purposes",
        "modalities",
        "granted_at",
        "expires_at",
        "status",
        "card",
        "pin",
        "qr",
        "scope",
        "schedule",
        "panel",
    }
    if isinstance(row, Mapping) and "credentials" in row and isinstance(row["credentials"], Mapping):
        row = {**{k: v for k, v in row.items() if k != "credentials"}, **row["credentials"]}
    unknown = set(row) - known
    if unknown:
        raise RosterError(where, f"unknown column(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")
    subject = str(row.get("subject") or "").strip()
    if not valid_subject(subject):
        raise RosterError(where, "subject is not a pseudonymous id (letters, digits, . _ : -; at most 64)")
    purposes = sorted(set(_split(row.get("purposes"))))
    if not purposes:
        raise RosterError(where, "purposes is empty (e.g. access:main-gate)")
    modalities = sorted(set(_split(row.get("modalities"))))
    if not set(modalities) <= MODALITIES:
        raise RosterError(where, f"modalities must be among {', '.join(sorted(MODALITIES))}")
    granted_at = _time(where, "granted_at", row.get("granted_at"), int(now))
    expires_at = _time(where, "expires_at", row.get("expires_at"), None)
    status = str(row.get("status") or "active").strip()
    if status not in ("active", "withdrawn"):
        raise RosterError(where, "status must be active or withdrawn")
    grants: list[CredentialGrant] = []
    for kind in (m.value for m in CREDENTIALS):
        value = row.get(kind)
        if value is None or str(value).strip() == "":
            continue
        try:
            grants.append(CredentialGrant(kind, credential_digest(key, kind, str(value))))
        except CredentialFormatError as exc:
            raise RosterError(where, str(exc)) from None
    assert granted_at is not None
    if expires_at is not None and expires_at <= granted_at:
        raise RosterError(where, "expires_at is not after granted_at")
    scope_items = sorted(set(_split(row.get("scope"))))
    bad = [item for item in scope_items if not valid_scope_item(item)]
    if bad or len(scope_items) > MAX_SCOPE:
        raise RosterError(
            where,
            f"scope must list at most {MAX_SCOPE} zone names (lower case, e.g. lobby; car-park) or gate ids "
            "(gw-...); leave it empty for the whole site",
        )
    return Entry(
        subject,
        frozenset(purposes),
        frozenset(modalities),
        granted_at,
        expires_at,
        status,
        tuple(sorted(grants, key=lambda g: (g.kind, g.digest))),
        frozenset(scope_items) if scope_items else None,
        _roster_schedule(where, row.get("schedule")),
        _roster_panel(where, subject, row.get("panel"), key),
    )


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _roster_schedule(where: str, value: object) -> tuple[Window, ...] | None:
    """``mon-fri 08:00-18:00; sat 09:00-13:00`` (days, then a span; ;-separated); empty: always."""
    text = "" if value is None else str(value).strip().lower()
    if not text:
        return None
    windows: list[Window] = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        match = re.fullmatch(r"([a-z,\-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", part)
        if match is None:
            raise RosterError(where, "schedule windows look like `mon-fri 08:00-18:00; sat 09:00-13:00`")
        days: set[int] = set()
        for span in match.group(1).split(","):
            ends = span.split("-")
            if len(ends) > 2 or not all(e in _DAYS for e in ends):
                raise RosterError(where, f"schedule days are {', '.join(_DAYS)} or a range like mon-fri")
            first, last = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
            days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)])
        h1, m1, h2, m2 = (int(match.group(i)) for i in range(2, 6))
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or not 0 <= start < end <= 1440:
            raise RosterError(where, "a schedule window starts before it ends, between 00:00 and 24:00")
        windows.append(Window(frozenset(days), start, end))
    if len(windows) > MAX_WINDOWS:
        raise RosterError(where, f"at most {MAX_WINDOWS} schedule windows")
    return tuple(windows)


def _roster_panel(where: str, subject: str, value: object, key: bytes) -> bytes | None:
    """The panel number, sealed with the site credential key (never kept in clear)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_PANEL_NUMBER:
        raise RosterError(where, f"panel is the number the site's panel knows the person by (0..{MAX_PANEL_NUMBER})")
    return seal_panel_number(key, subject, int(text))
