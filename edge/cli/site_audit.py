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
@click.option(
    "--previous",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The archived log this one continues (after `edge-provision init --force`): check the hand-over.",
)
@click.option("--previous-key", default=None, help="The previous identity's public key (hex or file), with --previous.")
@click.option("--show", is_flag=True, help="Also print every record (subject ids included) as JSON lines.")
def verify_cmd(file: Path, device_key: str, previous: Path | None, previous_key: str | None, show: bool) -> int:
    """Check FILE's hash chain and the device's signature over its head; exit 1 if anything is off."""
    from nacl.signing import VerifyKey

    from edge.audit.log import read_export, verify_export, verify_handover

    def public_key(text: str) -> VerifyKey:
        try:
            return VerifyKey(_device_key(text))
        except (StorageError, ValueError, OSError, TypeError):
            raise click.BadParameter("not an Ed25519 public key (64 hex characters) or a file holding one") from None

    if (previous is None) != (previous_key is None):
        raise click.UsageError("give --previous and --previous-key together")
    public = public_key(device_key)
    report = verify_export(file, public)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items())) or "none"
    click.echo(
        f"{file}: valid, {report.records} records signed by the device "
        f"({_when(report.first_at)} .. {_when(report.last_at)}); {kinds}"
    )
    if report.nonconforming:
        click.echo(f"note: {report.nonconforming} records have details outside today's allow-list (older version)")
    if previous is not None and previous_key is not None:
        old_public = public_key(previous_key)
        old = verify_export(previous, old_public)
        verify_handover(report, old, old_public)
        click.echo(
            f"{previous}: valid, {old.records} records; the hand-over to this log at its record 1 matches its head"
        )
    elif report.chain_start is not None:
        start = report.chain_start
        click.echo(
            f"note: this chain continues the log of device key {start.get('previous_kid')} "
            f"(head {start.get('previous_head_seq')}, archived as {start.get('archive')}); "
            "pass --previous and --previous-key to check it"
        )
    if show:
        _, records, _ = read_export(file)
        for seq, at, kind, details, _digest in records:
            click.echo(json.dumps({"seq": seq, "at": _when(at), "kind": kind, "details": details}, sort_keys=True))
    return 0
