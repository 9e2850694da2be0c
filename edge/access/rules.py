"""The standalone terminal's access rules, after identity and consent (issue 15, door mode ``relay``).

In the reader modes (``osdp``, ``wiegand-out``) the site's panel owns schedules and anti-passback; the
terminal only reports who it recognised, so the agent builds no rules there.

- **schedule**: the person's access windows from the signed list (``schedule`` on the entry, the
  list's time zone), evaluated on this device's clock. Outside them a grant becomes a denial with
  reason ``out_of_schedule``. A person without a schedule may pass at any time.
- **anti-passback**: when the list's gate roster puts this gate in an area (``passback``: ``in`` or
  ``out``), an ``in`` gate refuses a person already inside with reason ``anti_passback``; every
  passage granted here is recorded (``edge.access.passback``, kept across restarts). Exits are never
  refused.

:class:`StandaloneRules` reads the ledger at each decision, so a new list (a new schedule, a gate
moved to another area) applies from the next decision on.
"""

from __future__ import annotations

import itertools
import logging
from typing import Protocol

from edge.access.passback import ANTI_PASSBACK, Direction, Passage, PassbackLog

log = logging.getLogger(__name__)

OUT_OF_SCHEDULE = "out_of_schedule"


class PassbackSpec(Protocol):
    @property
    def area(self) -> str: ...

    @property
    def direction(self) -> str: ...


class RulesLedger(Protocol):
    """What the rules read from the consent ledger (``edge.consent.ledger.ConsentLedger``)."""

    def in_schedule(self, subject: str, now: float) -> bool: ...

    def passback(self) -> PassbackSpec | None:
        """This gate's anti-passback role from the list's roster, or None."""


class AccessRules(Protocol):
    def refusal(self, subject: str, now: float) -> str | None:
        """The reason a grant to ``subject`` must become a denial now, or None."""

    def passed(self, subject: str, now: float) -> None:
        """Record a granted passage (the door was released for ``subject``)."""


def _way(role: PassbackSpec) -> Direction:
    return "in" if role.direction == "in" else "out"


class NoRules:
    """Reader modes and tests: every grant stands."""

    def refusal(self, _subject: str, _now: float) -> str | None:
        return None

    def passed(self, subject: str, now: float) -> None:
        pass


class StandaloneRules:
    def __init__(self, ledger: RulesLedger, passback: PassbackLog | None, gate: str) -> None:
        self.ledger = ledger
        self.log = passback
        self.gate = gate
        self._seq = itertools.count(1)

    def refusal(self, subject: str, now: float) -> str | None:
        if not self.ledger.in_schedule(subject, now):
            return OUT_OF_SCHEDULE
        role = self.ledger.passback()
        if role is not None and self.log is not None and not self.log.allows(role.area, _way(role), subject):
            return ANTI_PASSBACK
        return None

    def passed(self, subject: str, now: float) -> None:
        role = self.ledger.passback()
        if role is None or self.log is None:
            return
        try:
            self.log.record(Passage(role.area, subject, _way(role), now, self.gate, next(self._seq)))
        except Exception as exc:  # the door already opened; a lost record is reported, never fatal
            log.error("anti-passback: could not record a passage (%s)", exc.__class__.__name__)
