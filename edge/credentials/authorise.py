"""Authorisation through the non-biometric path: a card, PIN or QR credential checked against the
consent list's entries. It works whatever the subject's biometric consent (granted, withdrawn,
expired) and while the list is stale: nobody is refused service for refusing biometrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from edge.consent.ledger import ConsentLedger
from edge.credentials.readers import Credential

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CredentialDecision:
    granted: bool
    subject: str | None
    reason: str  # granted | kind-disabled | unknown-credential | purpose-not-allowed

    def __repr__(self) -> str:
        return f"CredentialDecision(granted={self.granted}, reason={self.reason!r})"


def enabled_kinds(card: str, pin: bool, qr: bool) -> frozenset[str]:
    """The credential kinds the config's ``[credentials]`` section turns on."""
    kinds = set()
    if card != "none":
        kinds.add("card")
    if pin:
        kinds.add("pin")
    if qr:
        kinds.add("qr")
    return frozenset(kinds)


class CredentialAuthoriser:
    def __init__(self, ledger: ConsentLedger, *, purpose: str, kinds: Iterable[str] = ("card", "pin", "qr")) -> None:
        self.ledger = ledger
        self.purpose = purpose
        self.kinds = frozenset(kinds)

    def authorise(self, credential: Credential, now: float) -> CredentialDecision:
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
