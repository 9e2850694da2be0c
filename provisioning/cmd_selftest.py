"""``edge-provision selftest``: a table of pass or fail, with the fix for each failure."""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.common import EXIT_INCOMPLETE, EXIT_OK, json_option, print_json, state_of, state_option, table
from provisioning.selftest import Check, CheckResult, passed, run_checks

DEVICE_CHECKS = ("camera", "fingerprint", "models")


@click.command("selftest")
@click.option("--only", multiple=True, help="Run only these checks (repeatable).")
@state_option
@json_option
def selftest_cmd(only: tuple[str, ...], state_dir: Path, as_json: bool) -> int:
    """Check storage, clock, settings, trust, broker, camera, fingerprint sensor and models."""
    from provisioning import checks, hooks

    state = state_of(state_dir)
    selected = list(checks.BASE_CHECKS)
    wired = hooks.device_checks(state)
    selected += wired
    for name in DEVICE_CHECKS:
        if not any(c.name == name for c in wired):
            selected.append(Check(name, lambda _s: CheckResult("not wired", "this build has no driver for it yet", "")))
    if only:
        unknown = set(only) - {c.name for c in selected}
        if unknown:
            raise click.BadParameter(
                f"unknown check {sorted(unknown)}; choose from {', '.join(c.name for c in selected)}",
                param_hint="--only",
            )
        selected = [c for c in selected if c.name in only]
    outcomes = run_checks(state, selected)
    ok = passed(outcomes)
    if as_json:
        print_json({"passed": ok, "checks": [o.as_dict() for o in outcomes]})
    else:
        table("Selftest", ["check", "result", "detail", "fix"], [(o.name, o.status, o.detail, o.fix) for o in outcomes])
        click.echo("all checks passed" if ok else "some checks failed: apply the fixes above and run again")
    return EXIT_OK if ok else EXIT_INCOMPLETE
