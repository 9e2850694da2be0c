"""``edge-site registry``: the site's list of trusted gates, built from what each gate exports."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.errors import StorageError

_REGISTRY = click.option(
    "--registry",
    "registry_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Device registry JSON (created if missing).",
)


@click.group("registry")
def registry_group() -> None:
    """Add, list and remove the gates a site trusts (verifier, broker ACL, template sync)."""


@registry_group.command("add")
@_REGISTRY
@click.option("--zones", default="", help="Zones these gates stand in, ;-separated (e.g. lobby;car-park).")
@click.option(
    "--passback",
    default="",
    help="Anti-passback: AREA:in or AREA:out (this gate leads into or out of AREA, e.g. car-park:in).",
)
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
def add_cmd(registry_path: Path, zones: str, passback: str, exports: tuple[Path, ...]) -> int:
    """Add or update gates from EXPORTS, each the output of `edge-provision export --json`.

    The zones decide where consent scoped to zones applies; they reach the gates in the signed
    consent list (`edge-site consent issue --registry`).
    """
    from edge.consent.listformat import Passback
    from edge.crypto.keys import load_box_public, load_verify_key
    from edge.site.registry import Registry

    registry = Registry.load(registry_path) if registry_path.exists() else Registry()
    pb: Passback | None = None
    if passback:
        area, _, direction = passback.partition(":")
        if direction not in ("in", "out"):
            raise click.BadParameter("AREA:in or AREA:out, e.g. car-park:in", param_hint="--passback")
        pb = Passback(area, "in" if direction == "in" else "out")
    for path in exports:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise StorageError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("site"), str) or not doc.get("public_key"):
            raise StorageError(
                f"{path}: expected the output of `edge-provision export --json` (site, public_key, device_id)"
            )
        public = load_verify_key(str(doc["public_key"]))
        box = load_box_public(str(doc["box_key"])) if doc.get("box_key") else None
        names = [z.strip() for z in zones.replace(",", ";").split(";") if z.strip()]
        device = registry.add(doc["site"], public, box, names, pb)
        if doc.get("device_id") not in (None, device.device_id):
            raise StorageError(
                f"{path}: device_id does not belong to its public key (the key's id is {device.device_id})",
                hint="re-run `edge-provision export --json` on the gate rather than editing its output",
            )
        sync = "can receive synced templates" if box is not None else "no sync key: enrols locally only"
        where = ", ".join(sorted(device.zones)) or "no zone"
        click.echo(f"{device.device_id}  site {device.site}  {where}  ({sync})")
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    registry.save(registry_path)
    click.echo(f"wrote {registry_path}: {len(registry.devices)} gate(s)")
    return 0


@registry_group.command("list")
@_REGISTRY
def list_cmd(registry_path: Path) -> int:
    """Print every registered gate: id, site, whether it can receive synced templates."""
    from edge.site.registry import Registry

    registry = Registry.load(registry_path)
    for device in sorted(registry.devices.values(), key=lambda d: (d.site, d.device_id)):
        zones = ";".join(sorted(device.zones)) or "-"
        sync = "yes" if device.box_key is not None else "no"
        click.echo(f"{device.device_id}  site {device.site}  zones {zones}  sync {sync}")
    return 0


@registry_group.command("remove")
@_REGISTRY
@click.argument("device_ids", nargs=-1, required=True)
def remove_cmd(registry_path: Path, device_ids: tuple[str, ...]) -> int:
    """Remove gates (decommissioned or replaced); exit 1 naming an id that is not registered."""
    from edge.site.registry import Registry

    registry = Registry.load(registry_path)
    missing = [d for d in device_ids if d not in registry.devices]
    if missing:
        raise StorageError(f"not in {registry_path}: {', '.join(missing)}", hint="`edge-site registry list` shows them")
    for device_id in device_ids:
        del registry.devices[device_id]
    registry.save(registry_path)
    click.echo(f"wrote {registry_path}: {len(registry.devices)} gate(s)")
    return 0
