"""``edge-provision status``: what is provisioned and what is missing (exit 3 while incomplete)."""

from __future__ import annotations

from pathlib import Path

import click

from edge.ops.status import collect, rows
from provisioning.common import EXIT_INCOMPLETE, EXIT_OK, json_option, print_json, state_of, state_option, table


@click.command("status")
@state_option
@json_option
def status_cmd(state_dir: Path, as_json: bool) -> int:
    """Show what is provisioned and what is missing."""
    doc = collect(state_of(state_dir))
    if as_json:
        print_json(doc)
    else:
        table("Terminal status", ["item", "value"], rows(doc))
        click.echo("provisioned" if doc["provisioned"] else "not fully provisioned")
    return EXIT_OK if doc["provisioned"] else EXIT_INCOMPLETE
