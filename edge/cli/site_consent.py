"""``edge-site consent``: the site's consent authority (keygen, issue, withdraw, publish)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import click

from edge.errors import EdgeError

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not a duration like 7d, 12h, 30m or 3600")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


@click.group("consent")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: os.environ.get("EDGE_AUTHORITY_DIR", "consent-authority"),
    show_default="$EDGE_AUTHORITY_DIR or ./consent-authority",
    help="The authority directory (signing keys, credential key, roster, issued lists).",
)
@click.pass_context
def consent_group(ctx: click.Context, directory: Path) -> None:
    """The site's consent authority: keys, signed lists, and their distribution."""
    ctx.ensure_object(dict)
    ctx.obj["dir"] = directory


@consent_group.command("keygen")
@click.option("--site", help="The site id (first keygen only).")
@click.option("--rotate", is_flag=True, help="Rotation step 1: create a successor key the next list announces.")
@click.option("--finish-rotation", is_flag=True, help="Rotation step 2: sign with the successor, retire the old key.")
@click.pass_context
def keygen_cmd(ctx: click.Context, site: str | None, rotate: bool, finish_rotation: bool) -> int:
    """Create the authority's signing key and the site credential key, or rotate the signing key."""
    from edge.consent.authority import Authority

    auth = Authority(ctx.obj["dir"])
    if rotate and finish_rotation:
        raise click.UsageError("give --rotate or --finish-rotation, not both")
    if rotate:
        kid = auth.rotate()
        click.echo(f"successor key {kid} created; the next list issued announces it to devices")
        click.echo("after every device has taken that list, run: edge-site consent keygen --finish-rotation")
        return 0
    if finish_rotation:
        kid = auth.finish_rotation()
        click.echo(f"now signing with {kid}; the next list retires the old key on devices")
        return 0
    if not site:
        raise click.UsageError("the first keygen needs --site SITE")
    kid = auth.keygen(site)
    click.echo(f"authority for site {site!r} created in {auth.root}")
    click.echo(f"  pin on each device: {auth.public_file(kid)}")
    click.echo(f"  install on each device (secret, 0600): {auth.credential_key_path} -> trust/consent-credential.key")
    return 0


@consent_group.command("issue")
@click.argument("roster", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=False)
@click.option("--renew", is_flag=True, help="Re-sign the current roster as a new version (no ROSTER).")
@click.option("--valid-for", default="7d", show_default=True, help="Validity of the list (e.g. 7d, 12h).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Also copy the signed list here.")
@click.option(
    "--registry",
    "registry_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The site's device registry: its gates, keys and zones go into this and every later list.",
)
@click.option("--timezone", help="IANA zone the roster's schedules are in (e.g. Asia/Shanghai); kept for later lists.")
@click.pass_context
def issue_cmd(
    ctx: click.Context,
    roster: Path | None,
    renew: bool,
    valid_for: str,
    out: Path | None,
    registry_path: Path | None,
    timezone: str | None,
) -> int:
    """Sign a snapshot list from ROSTER (CSV or JSON; card/PIN/QR values are hashed, never kept).

    CSV columns: subject, purposes (;-separated), modalities (face;fingerprint), granted_at,
    expires_at (epoch seconds or ISO 8601 with zone), status (active|withdrawn), card, pin, qr,
    scope (zones or gate ids, ;-separated), schedule (e.g. mon-fri 08:00-18:00; sat 09:00-12:00),
    panel (the number the site's access panel knows the person by; sealed, never kept in clear).
    """
    from edge.consent.authority import Authority

    auth = Authority(ctx.obj["dir"])
    now = time.time()
    seconds = parse_duration(valid_for)
    if renew == (roster is not None):
        raise click.UsageError("give a ROSTER file or --renew")
    if timezone is not None:
        auth.set_timezone(timezone)
    if registry_path is not None:
        from edge.site.registry import Registry

        auth.set_gates(Registry.load(registry_path).roster(auth.load_state().site))
    if roster is not None:
        message, path = auth.issue(auth.read_roster(roster, now=now), now=now, valid_for_s=seconds)
    else:
        message, path = auth.reissue(now=now, valid_for_s=seconds)
    state = auth.load_state()
    if out is not None:
        out.write_bytes(message)
    gates = "" if state.gates is None else f", {len(state.gates)} gates"
    click.echo(f"issued version {state.version} ({len(state.entries)} entries{gates}, {len(message)} bytes): {path}")
    return 0


@consent_group.command("withdraw")
@click.argument("subject")
@click.option("--delta", is_flag=True, help="Issue a delta (for `edge consent apply`) instead of a snapshot.")
@click.option("--valid-for", default="7d", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Also copy the signed list here.")
@click.pass_context
def withdraw_cmd(ctx: click.Context, subject: str, delta: bool, valid_for: str, out: Path | None) -> int:
    """Record SUBJECT's withdrawal and issue the next list; devices delete their templates on it."""
    from edge.consent.authority import Authority

    auth = Authority(ctx.obj["dir"])
    message, path = auth.withdraw(subject, now=time.time(), delta=delta, valid_for_s=parse_duration(valid_for))
    if out is not None:
        out.write_bytes(message)
    click.echo(f"issued version {auth.load_state().version} ({'delta' if delta else 'snapshot'}): {path}")
    if delta:
        click.echo("note: deltas are applied with `edge consent apply`; publish a snapshot to the broker")
    return 0


@consent_group.command("publish")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=False)
@click.option("--broker", "url", required=True, help="mqtt://host:port or mqtts://host:port")
@click.option("--username", default=None)
@click.option("--password", default=None, envvar="EDGE_MQTT_PASSWORD", help="Or $EDGE_MQTT_PASSWORD.")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None)
@click.option("--timeout", "timeout_s", default=10.0, show_default=True)
@click.pass_context
def publish_cmd(
    ctx: click.Context,
    file: Path | None,
    url: str,
    username: str | None,
    password: str | None,
    ca_file: Path | None,
    timeout_s: float,
) -> int:
    """Publish FILE (default: the latest snapshot issued) retained to sites/{site}/consent.

    A list over one packet (512 KiB, or the broker's announced limit) goes as a signed manifest
    and chunks on sites/{site}/consent/chunks/...; a broker refusal is an error line and exit 1.
    """
    from edge.consent.authority import Authority
    from edge.consent.distribution import Broker, publish_list_report
    from edge.consent.signing import verify_list
    from edge.crypto.keys import key_id, load_verify_key

    auth = Authority(ctx.obj["dir"])
    if file is None:
        snapshots = sorted(
            auth.lists_dir().glob("*-v*.cose"), key=lambda p: int(p.stem.rsplit("-v", 1)[1].split("-")[0])
        )
        snapshots = [p for p in snapshots if not p.stem.endswith("-delta")]
        if not snapshots:
            raise click.UsageError("no list issued yet; run `edge-site consent issue ROSTER` first")
        file = snapshots[-1]
    message = file.read_bytes()
    keys = {}
    for pub in auth.root.glob("consent-authority-*.pub"):
        key = load_verify_key(pub.read_text())
        keys[key_id(key)] = key
    lst, _ = verify_list(message, keys)  # never publish something our own devices would refuse
    if lst.kind == "delta":
        raise EdgeError(
            f"{file} is a delta; the retained topic carries snapshots only",
            hint="apply deltas with `edge consent apply`, or publish the snapshot",
        )
    state = auth.load_state()
    report = publish_list_report(
        Broker(url, username, password, ca_file),
        lst.site,
        message,
        timeout_s=timeout_s,
        signing_key=auth.signing_key(state.active_kid),
        version=lst.version,
    )
    how = f"in {report.chunks} chunks of up to {report.chunk_bytes} bytes" if report.chunks else "as one message"
    click.echo(f"published version {lst.version} ({len(message)} bytes) retained to {report.topic} {how}")
    return 0


@consent_group.command("status")
@click.argument("subject")
@click.option(
    "--events",
    "events_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Verified events, as `edge-site listen --out` writes them.",
)
@click.option("--purpose", help="Judge consent for this purpose only (default: any purpose listed).")
@click.pass_context
def status_cmd(ctx: click.Context, subject: str, events_path: Path, purpose: str | None) -> int:
    """Per gate, whether SUBJECT's templates are enrolled, deleted (with a receipt) or not yet
    confirmed deleted; exit 1 while any gate has not confirmed a deletion it owes."""
    from edge.consent.authority import Authority
    from edge.site.status import NOT_CONFIRMED, complete, read_events, subject_status

    state = Authority(ctx.obj["dir"]).load_state()
    with events_path.open(encoding="utf-8", errors="replace") as handle:
        events = read_events(handle, str(events_path))
    gates = {g.id: g.place() for g in (state.gates or {}).values()}
    entry = state.entries.get(subject)
    rows = subject_status(subject, events, gates, entry, purpose=purpose, now=time.time())
    consent = "not listed" if entry is None else entry.status
    click.echo(f"{subject}: consent {consent} (list version {state.version}); {len(gates)} gates in the roster")
    if not rows:
        click.echo("  no gate has reported this subject's templates")
    for row in rows:
        when = f" at {row.at}" if row.at is not None else ""
        version = f", list v{row.list_version}" if row.list_version is not None else ""
        click.echo(f"  {row.gate}  {row.modality:<11} {row.state}{when} (event seq {row.seq}{version})")
    if not complete(rows):
        waiting = sorted({r.gate for r in rows if r.state == NOT_CONFIRMED})
        click.echo(f"not complete: {len(waiting)} gate(s) hold templates they must delete and have not confirmed")
        return 1
    return 0
