"""``edge-provision factory-reset``: crypto-erase everything the terminal holds.

Order: the sensor's template library first (it needs the settings to find the sensor), then the
keys (without gallery.key every gallery ciphertext is noise; without identity.key the device can
no longer sign), then the stores (gallery, consent, audit chain and its head, outbox), the trust
anchors and the settings. The directory itself stays, empty and 0700, as systemd's StateDirectory.
Key files are overwritten before they are unlinked; on flash that is best effort, which is why the
erasure is cryptographic: what remains on the medium is ciphertext under a destroyed key.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from edge.errors import EdgeError
from edge.state import StateDir, fsync_dir
from provisioning.common import EXIT_INCOMPLETE, EXIT_OK, json_option, print_json, state_of, state_option, table


def _shred(path: Path) -> None:
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


def erase(state: StateDir, erase_sensor: object | None, *, skip_sensor: bool = False) -> list[tuple[str, str]]:
    """Do the reset; return (item, what happened) rows."""
    rows: list[tuple[str, str]] = []
    if skip_sensor:
        rows.append(("sensor library", "skipped (--skip-sensor)"))
    elif callable(erase_sensor):
        try:
            rows.append(("sensor library", f"erased ({erase_sensor()} templates)"))
        except EdgeError as exc:
            rows.append(("sensor library", f"FAILED: {exc.one_line()}"))
    else:
        rows.append(
            ("sensor library", "NOT ERASED: no sensor in the settings (--skip-sensor if the terminal has none)")
        )
    for secret in (state.gallery_key, state.identity_key):
        if secret.exists():
            _shred(secret)
            rows.append((secret.name, "destroyed"))
        else:
            rows.append((secret.name, "absent"))
    first = [state.gallery_key, state.identity_key]
    for path in sorted(state.root.rglob("*"), key=lambda p: (len(p.parts), str(p)), reverse=True):
        if path in first:
            continue
        if path.is_dir():
            path.rmdir()
            continue
        if path.name.endswith(".key"):
            _shred(path)
        else:
            path.unlink()
        rows.append((str(path.relative_to(state.root)), "deleted"))
    state.ensure()  # leave an empty, 0700 state dir with its trust/ subdirectory
    fsync_dir(state.root)
    return rows


@click.command("factory-reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--skip-sensor", is_flag=True, help="The terminal has no sensor, or it was erased separately.")
@state_option
@json_option
def reset_cmd(yes: bool, skip_sensor: bool, state_dir: Path, as_json: bool) -> int:
    """Crypto-erase gallery, keys, audit head, consent cache, outbox and the sensor's library."""
    from provisioning.hooks import sensor_eraser

    state = state_of(state_dir)
    if not state.root.exists():
        raise click.UsageError(f"{state.root} does not exist: nothing to reset")
    if not yes:
        click.confirm(
            f"Erase every key, template, consent record and queued event in {state.root}? This cannot be undone",
            abort=True,
        )
    rows = erase(state, None if skip_sensor else sensor_eraser(state), skip_sensor=skip_sensor)
    complete = not any(what.startswith(("FAILED", "NOT ERASED")) for _, what in rows)
    if as_json:
        print_json({"complete": complete, "erased": dict(rows)})
    else:
        table("Factory reset", ["item", "result"], rows)
        if not complete:
            click.echo("the sensor library was not erased: connect the sensor and erase it, then run again")
    return EXIT_OK if complete else EXIT_INCOMPLETE
