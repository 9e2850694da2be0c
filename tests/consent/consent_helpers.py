"""Helpers for consent tests: a real authority directory and a provisioned device state dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from edge.audit.log import AuditLog
from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.ledger import ConsentLedger
from edge.consent.listformat import Entry, make_entry
from edge.state import StateDir

SITE = "site-a"
T0 = 1_800_000_000.0
PURPOSE = "access:main-gate"


@dataclass
class Device:
    state: StateDir
    key: SigningKey
    audit: AuditLog
    ledger: ConsentLedger

    def reopen(self, grace_period_s: float = 86400.0) -> ConsentLedger:
        self.ledger.close()
        self.ledger = ConsentLedger.open(self.state, SITE, grace_period_s=grace_period_s, audit=self.audit)
        return self.ledger


def entry(subject: str, modalities: tuple[str, ...] = ("face", "fingerprint"), **kw: object) -> Entry:
    return make_entry(subject, [PURPOSE], modalities, int(T0) - 100, **kw)  # type: ignore[arg-type]


def make_authority(tmp_path: Path) -> Authority:
    auth = Authority(tmp_path / "authority")
    auth.keygen(SITE)
    return auth


def provision(root: Path, auth: Authority) -> StateDir:
    state = StateDir(root)
    state.ensure()
    for pub in auth.root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    trust.install_credential_key(state, auth.credential_key())
    return state


def make_device(tmp_path: Path, authority: Authority) -> Iterator[Device]:
    state = provision(tmp_path / "device", authority)
    key = SigningKey.generate()
    audit = AuditLog.open(state.audit_db, key, synchronous="NORMAL")
    ledger = ConsentLedger.open(state, SITE, grace_period_s=86400.0, audit=audit)
    dev = Device(state, key, audit, ledger)
    yield dev
    dev.ledger.close()
    audit.close()
