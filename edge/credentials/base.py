"""What every credential reader shares: the ``Credential`` value (secret: never in a repr, a log
line or an exception message), the ``CredentialReader`` Protocol, and the control-line format.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from edge.credentials.hashing import KINDS, CredentialFormatError, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credential:
    kind: str
    value: str = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, value=<redacted>, source={self.source!r})"


class CredentialReader(Protocol):
    def read(self, timeout_s: float) -> Credential | None:
        """The next credential presented within ``timeout_s``, or None."""
        ...

    def close(self) -> None: ...


def parse_control_line(line: str) -> Credential | None:
    """``kind:value`` from the simulator's control FIFO; None (logged) when malformed."""
    kind, sep, value = line.strip().partition(":")
    if not sep or kind not in KINDS:
        log.warning("simulated credential line ignored: expected kind:value with kind card, pin or qr")
        return None
    try:
        normalise(kind, value)
    except CredentialFormatError as exc:
        log.warning("simulated credential line ignored: %s", exc)
        return None
    return Credential(kind, value.strip(), "sim")
