"""``edge-provision``: what an installer types at a new terminal."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edge import __version__
from edge.cli.lazy import LazyGroup, run

COMMANDS = {
    "init": ("provisioning.cmd_init:init_cmd", "Create the state directory, device identity and gallery key."),
    "trust": ("provisioning.cmd_trust:trust_cmd", "Pin the consent authority's key and the broker CA."),
    "profile": ("provisioning.cmd_profile:profile_cmd", "Choose and validate the device profile."),
    "broker": ("provisioning.cmd_broker:broker_cmd", "Set the broker URL and credentials; test the connection."),
    "selftest": ("provisioning.cmd_selftest:selftest_cmd", "Check camera, sensor, models, broker, clock, storage."),
    "osdp-key": (
        "provisioning.cmd_osdp_key:osdp_key_cmd",
        "Install the OSDP Secure Channel key shared with the panel.",
    ),
    "enrol": ("provisioning.cmd_enrol:enrol_cmd", "Enrol a consenting subject (face or finger)."),
    "export": ("provisioning.cmd_export:export_cmd", "Print the device id and public key for the site registry."),
    "status": ("provisioning.cmd_status:status_cmd", "Show what is provisioned and what is missing."),
    "factory-reset": ("provisioning.cmd_reset:reset_cmd", "Crypto-erase gallery, keys, audit head and sensor library."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-provision")
@click.option("-v", "--verbose", is_flag=True, help="Show full error details.")
def cli(verbose: bool) -> None:
    """Provision a gate terminal: run init, trust, profile, broker, selftest, then enrol."""


def main(argv: Sequence[str] | None = None) -> int:
    return run(cli, argv, "edge-provision")


def entry() -> None:
    raise SystemExit(main())
