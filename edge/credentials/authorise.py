"""Authorisation through the non-biometric path: a card, PIN or QR credential checked against the
consent list's entries. It works whatever the subject's biometric consent (granted, withdrawn,
expired) and while the list is stale: nobody is refused service for refusing biometrics.

The gate (``edge.agent.gate.GateCore.on_credential``) asks it for every presentation: a kind the
config's ``[credentials]`` section does not enable (``pin``/``qr`` false, ``card = "none"``) is
refused, and so is a credential whose subject's entry does not list this gate's purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from edge.modality import CREDENTIALS, Modality

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CredentialDecision:
    granted: bool
    subject: str | None
    reason: str  # granted | kind-disabled | unknown-credential | purpose-not-allowed

    def __repr__(self) -> str:
        return f"CredentialDecision(granted={self.granted}, reason={self.reason!r})"


def enabled_kinds(card: str, pin: bool, qr: bool) -> frozenset[Modality]:
    """The credential kinds the config's ``[credentials]`` section turns on."""
    kinds = set()
    if card != "none":
        kinds.add(Modality.card)
    if pin:
        kinds.add(Modality.pin)
    if qr:
        kinds.add(Modality.qr)
    return frozenset(kinds)


class CredentialLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def value(self) -> str: ...


class EntryLike(Protocol):
    @property
    def purposes(self) -> Collection[str]: ...


class CredentialBook(Protocol):
    """What the authoriser reads: the consent ledger (or a test's consent double)."""

    def credential_subject(self, kind: str, value: str, now: float) -> str | None: ...

    def entry(self, subject: str) -> EntryLike | None: ...


class CredentialAuthoriser:
    def __init__(self, ledger: CredentialBook, *, purpose: str, kinds: Iterable[str] = CREDENTIALS) -> None:
        self.ledger = ledger
        self.purpose = purpose
        self.kinds = frozenset(kinds)

    def authorise(self, credential: CredentialLike, now: float) -> CredentialDecision:
        if credential.kind not in self.kinds:
            return CredentialDecision(False, None, "kind-disabled")
        subject = self.ledger.credential_subject(credential.kind, credential.value, now)
        if subject is None:
            log.info("%s credential not recognised", credential.kind)
            return CredentialDecision(False, None, "unknown-credential")
        entry = self.ledger.entry(subject)
        if entry is None or self.purpose not in entry.purposes:
            return CredentialDecision(False, subject, "purpose-not-allowed")
        return CredentialDecision(True, subject, "granted")
