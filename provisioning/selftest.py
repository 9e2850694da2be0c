"""The selftest framework: named checks, each returning pass/fail/warn/unknown with the fix.

A check is a function ``(state) -> CheckResult``; it never raises (an unexpected exception is a
failure with its class name). The command runs every check, prints one table row per check and
exits 3 when any check failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from edge.errors import EdgeError
from edge.state import StateDir

log = logging.getLogger(__name__)

Status = Literal["pass", "fail", "warn", "unknown", "not wired"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[StateDir], CheckResult]


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Status
    detail: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(state: StateDir, checks: list[Check]) -> list[Outcome]:
    outcomes = []
    for check in checks:
        try:
            result = check.run(state)
        except EdgeError as exc:
            result = CheckResult("fail", str(exc), exc.hint)
        except Exception as exc:  # a check must never take the others down
            log.debug("check %s raised %s", check.name, exc.__class__.__name__)
            result = CheckResult("fail", f"the check itself failed: {exc.__class__.__name__}", "report this")
        outcomes.append(Outcome(check.name, result.status, result.detail, result.fix))
    return outcomes


def passed(outcomes: list[Outcome]) -> bool:
    return not any(o.status == "fail" for o in outcomes)
