"""``edge-provision export``: what the site's device registry needs, and nothing secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edge.crypto.keys import device_id, fingerprint_text, key_id, load_box_key, load_signing_key
from edge.state import StateDir
from provisioning.common import EXIT_OK, json_option, print_json, state_of, state_option
from provisioning.files import read_settings


def identity(state: StateDir) -> dict[str, Any]:
    public = load_signing_key(state.identity_key).verify_key
    doc = read_settings(state)
    device = doc.get("device", {})
    # a terminal provisioned before site sync has no sync key until `edge-provision init --force`
    box = bytes(load_box_key(state.sync_key).public_key).hex() if state.sync_key.exists() else None
    return {
        "device_id": device_id(public),
        "public_key": bytes(public).hex(),
        "box_key": box,
        "key_id": key_id(public).hex(),
        "fingerprint": fingerprint_text(public),
        "site": device.get("site"),
        "gate": device.get("gate"),
    }


@click.command("export")
@state_option
@json_option
def export_cmd(state_dir: Path, as_json: bool) -> int:
    """Print the device id and public key for the site's registry."""
    result = identity(state_of(state_dir))
    if as_json:
        print_json(result)
        return EXIT_OK
    for key in ("device_id", "public_key", "box_key", "key_id", "fingerprint", "site", "gate"):
        click.echo(f"{key:12} {result[key] or '(none: this terminal cannot receive synced templates)'}")
    return EXIT_OK
