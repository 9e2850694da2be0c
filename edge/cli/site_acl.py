"""``edge-site broker-acl``: the Mosquitto ACL file for the site's registered devices."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("broker-acl")
@click.option(
    "--registry", "registry_path", type=click.Path(path_type=Path), required=True, help="Device registry JSON."
)
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Default stdout."
)
def broker_acl_cmd(registry_path: Path, out_path: Path | None) -> int:
    """Write the broker ACL: site services, each device's own topics, and its own site's consent list only."""
    from edge.site.acl import render_acl
    from edge.site.registry import Registry
    from edge.state import atomic_write

    registry = Registry.load(registry_path)
    text = render_acl(registry)
    if out_path is None:
        click.echo(text, nl=False)
        return 0
    atomic_write(out_path, text.encode(), 0o644)
    sites = sorted({d.site for d in registry.devices.values()})
    click.echo(
        f"wrote {out_path}: {len(registry.devices)} devices on {len(sites)} site(s); "
        "reload the broker (SIGHUP) to apply it",
        err=True,
    )
    return 0
