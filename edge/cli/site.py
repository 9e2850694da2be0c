"""``edge-site``: tools for the site's consent authority and operators."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edge import __version__
from edge.cli.lazy import LazyGroup, run

COMMANDS = {
    "consent": ("edge.cli.site_consent:consent_group", "Consent authority: keygen, issue, withdraw, publish."),
    "listen": ("edge.cli.site_listen:listen_cmd", "Verify signed events from the broker and write JSON lines."),
    "audit": ("edge.cli.site_audit:audit_group", "Verify an audit log exported from a device."),
    "registry": ("edge.cli.site_registry:registry_group", "The site's trusted gates: add from exports, list, remove."),
    "broker-acl": ("edge.cli.site_acl:broker_acl_cmd", "Write the broker ACL: each device reads its own site's list."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-site")
@click.option("-v", "--verbose", is_flag=True, help="Show full error details.")
def cli(verbose: bool) -> None:
    """Site tools: the consent authority, the event verifier and the audit checker."""


def main(argv: Sequence[str] | None = None) -> int:
    return run(cli, argv, "edge-site")


def entry() -> None:
    raise SystemExit(main())
