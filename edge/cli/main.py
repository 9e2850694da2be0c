"""``edge``: the device side (run, demo, validate, models, consent, status)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edge import __version__
from edge.cli.lazy import LazyGroup, run

COMMANDS = {
    "run": ("edge.cli.cmd_run:run_cmd", "Run the gate agent (camera, sensor, door, MQTT)."),
    "demo": ("edge.cli.cmd_demo:demo_cmd", "Run the whole product on simulators and check every outcome."),
    "validate": ("edge.cli.cmd_validate:validate_cmd", "Check a config file and its device profile."),
    "models": ("edge.cli.cmd_models:models_cmd", "Build, verify and evaluate the face model bundle."),
    "consent": ("edge.cli.cmd_consent:consent_cmd", "Show or apply the signed consent list."),
    "status": ("edge.cli.cmd_status:status_cmd", "Show the agent's state directory at a glance."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge")
@click.option("-v", "--verbose", is_flag=True, help="Show full error details.")
def cli(verbose: bool) -> None:
    """The gate agent: on-device biometric access control.

    Raw biometrics never leave the device; only signed results are published.
    """


def main(argv: Sequence[str] | None = None) -> int:
    return run(cli, argv, "edge")


def entry() -> None:
    raise SystemExit(main())
