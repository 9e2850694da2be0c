"""What the agent and the installer CLI need from a fingerprint sensor.

Templates stay inside the module: these calls return slots and scores only. The real
implementation is :class:`edge.fingerprint.workflows.SensorWorkflows` over the driver; it owns the
port (``close``), the touch line and the queue of slots waiting to be erased.

``identify`` says which of three things happened, because the gate treats them differently:
``NoFinger`` (nobody, or an image too poor to search: not an attempt), ``NoMatch`` (a finger was
searched and matched nothing: a failed attempt, denied and counted towards back-off) and
``Match(slot, score)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: Prompts passed to ``enrol(prompt=...)``; the CLI prints them, the agent maps them to UI cues.
PROMPT_PLACE = "Place your finger on the sensor"
PROMPT_LIFT = "Lift your finger"
PROMPT_AGAIN = "Place the same finger again"
PROMPT_POOR = "The image was not clear enough; lift your finger and place it again, flat and centred"
PROMPT_DIFFERENT = "That was a different finger; place the same finger as before"


@dataclass(frozen=True)
class NoFinger:
    """No finger on the glass within the timeout, or an image too poor to search."""


@dataclass(frozen=True)
class NoMatch:
    """A finger was imaged and searched; no template in the library matched it."""


@dataclass(frozen=True)
class Match:
    """A finger matched the template in ``slot`` with the module's ``score``."""

    slot: int
    score: int


Identified = NoFinger | NoMatch | Match
NO_FINGER = NoFinger()
NO_MATCH = NoMatch()


@dataclass(frozen=True)
class EnrolOutcome:
    """``slot`` where the new template was stored, or ``duplicate_of`` when the finger was already
    enrolled (then nothing is stored and ``slot`` is None)."""

    slot: int | None
    duplicate_of: int | None = None
    captures: int = 0
    retries: int = 0


@dataclass(frozen=True)
class SensorHealth:
    ok: bool
    port: str
    capacity: int = 0
    templates: int = 0
    detail: str = ""


@runtime_checkable
class FingerprintSensor(Protocol):
    @property
    def capacity(self) -> int: ...

    def identify(self, timeout_s: float) -> Identified:
        """Wait up to ``timeout_s`` for a finger; say whether none came, it matched nothing, or which slot."""
        ...

    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> EnrolOutcome: ...

    def delete(self, slot: int) -> None: ...

    def empty(self) -> None: ...

    def template_count(self) -> int: ...

    def health(self) -> SensorHealth: ...

    def close(self) -> None:
        """Release the port and the touch line."""
        ...
