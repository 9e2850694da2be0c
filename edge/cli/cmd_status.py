"""``edge status``: the agent's state directory at a glance (same document as edge-provision status)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.ops.status import collect, rows
from edge.state import StateDir


@click.command("status")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/var/lib/gate-edge"),
    envvar="EDGE_STATE_DIR",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(state_dir: Path, as_json: bool) -> int:
    """Show identity, trust anchors, settings and stores; exit 3 if provisioning is incomplete."""
    doc = collect(StateDir(state_dir.absolute()))
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        width = max(len(label) for label, _ in rows(doc))
        for label, value in rows(doc):
            click.echo(f"{label:<{width}}  {value}")
    return 0 if doc["provisioned"] else 3
