"""What the device threads hand the gate thread: a small union of dataclasses (``Item``).

Each device thread (``edge.agent.runner.DeviceWorker``) puts one of these on the gate queue; the
gate thread matches on it (``GateRunner._dispatch``) and calls ``GateCore``. A new kind of input is
one dataclass here, a member of ``Item`` and a ``case`` there.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.agent.ports import CredentialLike, SearchHit
from edge.fingerprint.api import Match, NoMatch


@dataclass(frozen=True)
class FaceSeen:
    """A good face, already searched on the camera thread: the gate never searches again."""

    hit: SearchHit


@dataclass(frozen=True)
class AttackSeen:
    """The face in view was judged a presentation attack (edge.vision.liveness): never searched."""


@dataclass(frozen=True)
class TamperSeen:
    """The case switch changed; ``erased`` names what the tamper response already crypto-erased."""

    opened: bool
    erased: tuple[str, ...] = ()


@dataclass(frozen=True)
class FingerSeen:
    result: Match | NoMatch


@dataclass(frozen=True)
class CredentialSeen:
    credential: CredentialLike


@dataclass(frozen=True)
class DeviceDown:
    name: str
    error: BaseException


@dataclass(frozen=True)
class DeviceUp:
    name: str


@dataclass(frozen=True)
class Idle:
    """A step that saw nothing (no face, a poor one, no finger, no card): alive, nothing to decide."""


IDLE = Idle()
Item = FaceSeen | AttackSeen | TamperSeen | FingerSeen | CredentialSeen | DeviceDown | DeviceUp | Idle
