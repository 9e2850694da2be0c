"""``edge consent``: show the consent list in force, apply list files offline, export the audit log."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge.errors import StorageError
from edge.state import StateDir

if TYPE_CHECKING:
    from edge.audit.log import AuditLog

DEFAULT_STATE_DIR = "/var/lib/gate-edge"
DEFAULT_GRACE_S = 86400.0

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Device:
    state: StateDir
    site: str
    grace_period_s: float

    def device_id(self) -> str:
        """This gate's id, from its identity key (empty before `edge-provision init`)."""
        if not self.state.identity_key.exists():
            return ""
        from edge.crypto.keys import device_id, load_signing_key

        return device_id(load_signing_key(self.state.identity_key).verify_key)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resolve(config: Path | None, state_dir: Path | None, site: str | None, grace: float | None) -> Device:
    """Settings from --config, else the state dir's edge.toml, with command-line overrides."""
    doc: dict[str, object] = {}
    if config is not None:
        from edge.config.load import load_config

        cfg, _ = load_config(config)
        state_dir = state_dir or cfg.device.state_dir
        site = site or cfg.device.site
        grace = grace if grace is not None else cfg.consent.grace_period_s
    state = StateDir(state_dir or Path(os.environ.get("EDGE_STATE_DIR", DEFAULT_STATE_DIR)))
    if not state.root.is_dir():
        raise StorageError(
            f"{state.root} is not a provisioned state directory",
            hint="run `edge-provision init`, or pass --state-dir / --config",
        )
    if (site is None or grace is None) and state.settings.exists():
        try:
            doc = tomllib.loads(state.settings.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StorageError(f"{state.settings} is unreadable ({exc.__class__.__name__})") from None
    device = doc.get("device", {}) if isinstance(doc.get("device"), dict) else {}
    consent = doc.get("consent", {}) if isinstance(doc.get("consent"), dict) else {}
    assert isinstance(device, dict)
    assert isinstance(consent, dict)
    site = site or device.get("site")
    if not site:
        raise click.UsageError(f"no site: pass --site or --config (none in {state.settings})")
    if grace is None:
        grace = float(consent.get("grace_period_s", DEFAULT_GRACE_S))
    return Device(state, str(site), float(grace))


@click.group("consent")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="The agent's config file.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Default $EDGE_STATE_DIR or /var/lib/gate-edge.",
)
@click.option("--site", help="The site id (default from the config / state dir).")
@click.option("--grace-period", "grace", type=float, help="Seconds past validity before failing closed.")
@click.pass_context
def consent_cmd(
    ctx: click.Context, config: Path | None, state_dir: Path | None, site: str | None, grace: float | None
) -> None:
    """The signed consent list on this device."""
    ctx.ensure_object(dict)
    ctx.obj["args"] = (config, state_dir, site, grace)


def _device(ctx: click.Context) -> Device:
    return _resolve(*ctx.obj["args"])


def _audit(state: StateDir) -> AuditLog:
    from edge.audit.log import AuditLog
    from edge.crypto.keys import load_signing_key

    return AuditLog.open(state.audit_db, load_signing_key(state.identity_key))


@consent_cmd.command("show")
@click.option("--entries", is_flag=True, help="Also list every entry (pseudonymous subject ids).")
@click.pass_context
def show_cmd(ctx: click.Context, entries: bool) -> int:
    """Print the list in force: version, validity, staleness, counts, pinned keys."""
    from edge.consent import trust
    from edge.consent.ledger import ConsentLedger

    dev = _device(ctx)
    now = time.time()
    ledger = ConsentLedger.open(dev.state, dev.site, grace_period_s=dev.grace_period_s, device=dev.device_id())
    try:
        place = ledger.place
        info = ledger.info
        pinned = sorted(kid.hex() for kid in trust.load_pinned(dev.state))
        click.echo(f"site:          {dev.site}")
        click.echo(f"pinned keys:   {', '.join(pinned) or 'none (run edge-provision trust)'}")
        if info is None:
            click.echo("list:          none applied (biometric enrolment and matching are off)")
            return 0
        listed = ledger.entries()
        active = sum(1 for e in listed if e.consent_active(now))
        withdrawn = sum(1 for e in listed if e.status == "withdrawn")
        with_credential = sum(1 for e in listed if e.credentials)
        stale = ledger.is_stale(now)
        click.echo(f"version:       {info.version} ({info.kind}, signed by {info.signer_kid.hex()})")
        click.echo(f"issued:        {_when(info.issued_at)}")
        click.echo(f"valid until:   {_when(info.valid_until)} (+{dev.grace_period_s:.0f} s grace)")
        click.echo(f"applied:       {_when(info.applied_at)}")
        click.echo(f"state:         {'STALE: biometrics fail closed, credentials still work' if stale else 'fresh'}")
        click.echo(
            f"entries:       {len(listed)} ({active} active consent, {withdrawn} withdrawn, "
            f"{len(listed) - active - withdrawn} expired or pending; {with_credential} with a credential)"
        )
        scoped = [e for e in listed if e.scope is not None]
        here = sum(1 for e in listed if e.consent_active(now) and place.covers(e.scope))
        zones = ", ".join(sorted(place.zones)) or "none"
        click.echo(
            f"this gate:     zones {zones}; {here} active consent(s) cover it "
            f"({len(scoped)} entries are scoped to zones or gates, the rest cover the whole site)"
        )
        if entries:
            for e in listed:
                expires = _when(e.expires_at) if e.expires_at is not None else "never"
                creds = ",".join(sorted({g.kind for g in e.credentials})) or "-"
                scope = "site" if e.scope is None else ";".join(sorted(e.scope))
                covered = "here" if place.covers(e.scope) else "elsewhere"
                click.echo(
                    f"  {e.subject}  {e.status:<9} {'+'.join(sorted(e.modalities)) or '-':<16} "
                    f"{';'.join(sorted(e.purposes))}  expires {expires}  credentials {creds}  "
                    f"scope {scope} ({covered})"
                )
    finally:
        ledger.close()
    return 0


@consent_cmd.command("apply")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def apply_cmd(ctx: click.Context, files: tuple[Path, ...]) -> int:
    """Apply signed list FILES in order (offline install); exit 1 naming the reason for each rejection.

    A running agent picks the new list up within a second and deletes what it no longer allows.
    """
    from edge.consent.ledger import ConsentLedger, ListRejected

    dev = _device(ctx)
    audit = _audit(dev.state)
    ledger = ConsentLedger.open(dev.state, dev.site, grace_period_s=dev.grace_period_s, audit=audit)
    failures = 0
    try:
        for path in files:
            try:
                message = path.read_bytes()
            except OSError as exc:
                click.echo(f"{path}: cannot read ({exc.strerror})", err=True)
                failures += 1
                continue
            try:
                outcome = ledger.apply(message, time.time())
            except ListRejected as exc:
                click.echo(f"{path}: rejected ({exc.reason}): {exc.detail}", err=True)
                failures += 1
                continue
            if outcome.changed:
                click.echo(
                    f"{path}: applied version {outcome.version} ({outcome.kind}), "
                    f"{len(outcome.affected)} subjects changed"
                )
            else:
                click.echo(f"{path}: version {outcome.version} is already in force; nothing to do")
    finally:
        ledger.close()
        audit.close()
    return 1 if failures else 0


@consent_cmd.command("export-audit")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def export_audit_cmd(ctx: click.Context, out: Path) -> int:
    """Export the audit log (hash chain and signed head) for `edge-site audit verify`."""
    dev = _device(ctx)
    audit = _audit(dev.state)
    try:
        count = audit.export(out)
        kid = audit.kid.hex()
    finally:
        audit.close()
    click.echo(f"exported {count} audit records to {out} (device key {kid})")
    return 0
