"""``edge-provision profile``: choose a device profile, validated against the whole settings file."""

from __future__ import annotations

from pathlib import Path

import click

from edge.config.final import validate_profile
from edge.config.load import load_profile, shipped_profiles
from edge.errors import ConfigError
from edge.state import atomic_write
from provisioning.common import EXIT_OK, json_option, print_json, state_of, state_option, table
from provisioning.files import read_settings, save_settings, section

LOCAL_PROFILE = "profile.toml"


@click.command("profile")
@click.argument("name", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the shipped profiles.")
@state_option
@json_option
def profile_cmd(name: str | None, list_only: bool, state_dir: Path, as_json: bool) -> int:
    """Choose NAME (a shipped profile) or a profile FILE; with neither, show the current choice."""
    shipped = shipped_profiles()
    if list_only:
        rows = []
        for stem, path in sorted(shipped.items()):
            profile = load_profile(path)
            rows.append({"name": stem, "board": profile.board.name, "arch": profile.board.arch})
        if as_json:
            print_json({"profiles": rows})
        else:
            table("Shipped device profiles", ["name", "board", "arch"], [tuple(r.values()) for r in rows])
        return EXIT_OK
    state = state_of(state_dir)
    doc = read_settings(state)
    device = section(doc, "device")
    if name is None:
        current = device.get("profile")
        if as_json:
            print_json({"profile": current})
        else:
            click.echo(f"profile: {current or '(not chosen)'}")
        return EXIT_OK
    if name in shipped:
        path, chosen, copy = shipped[name], name, False
    else:
        path, chosen, copy = Path(name), LOCAL_PROFILE, True
        if not path.is_file():
            import difflib

            close = difflib.get_close_matches(name, list(shipped), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise click.BadParameter(
                f"{name!r} is neither a shipped profile nor a file. {hint}(`edge-provision profile --list`)",
                param_hint="NAME",
            )
    profile = load_profile(path)
    problems = validate_profile(profile)
    if problems:
        raise ConfigError(str(path), problems)
    previous = device.get("profile")
    device["profile"] = chosen
    local = state.root / LOCAL_PROFILE
    backup = local.read_bytes() if copy and local.exists() else None
    if copy:
        atomic_write(local, path.read_bytes(), 0o644)
    try:
        save_settings(state, doc)  # the profile is checked against the rest of the settings here
    except ConfigError:
        if copy:
            if backup is None:
                local.unlink(missing_ok=True)
            else:
                atomic_write(local, backup, 0o644)
        raise
    result = {"profile": chosen, "board": profile.board.id, "previous": previous}
    if as_json:
        print_json(result)
    else:
        click.echo(f"profile {chosen!r} ({profile.board.name}) chosen and validated")
    return EXIT_OK
