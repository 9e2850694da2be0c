"""``edge-site audit verify FILE``: check an audit log exported from a device."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from edge.crypto.keys import load_verify_key
from edge.errors import StorageError


def _device_key(text: str) -> bytes:
    path = Path(text)
    raw = path.read_text() if path.exists() else text
    return bytes(load_verify_key(raw.strip()))


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group("audit")
def audit_group() -> None:
    """Verify audit logs exported from devices."""


@audit_group.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--device-key",
    required=True,
    help="The device's public key: 64 hex characters, or a file holding them (`edge-provision export`).",
)
@click.option("--show", is_flag=True, help="Also print every record (subject ids included) as JSON lines.")
def verify_cmd(file: Path, device_key: str, show: bool) -> int:
    """Check FILE's hash chain and the device's signature over its head; exit 1 if anything is off."""
    from nacl.signing import VerifyKey

    from edge.audit.log import read_export, verify_export

    try:
        public = VerifyKey(_device_key(device_key))
    except (StorageError, ValueError, OSError):
        raise click.BadParameter("not an Ed25519 public key (64 hex characters) or a file holding one") from None
    report = verify_export(file, public)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items())) or "none"
    click.echo(
        f"{file}: valid, {report.records} records signed by the device "
        f"({_when(report.first_at)} .. {_when(report.last_at)}); {kinds}"
    )
    if show:
        _, records, _ = read_export(file)
        for seq, at, kind, details, _digest in records:
            click.echo(json.dumps({"seq": seq, "at": _when(at), "kind": kind, "details": details}, sort_keys=True))
    return 0
