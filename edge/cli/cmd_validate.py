"""``edge validate CONFIG``: print every problem with file:line, exit 1 if any."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.config.final import validate_profile
from edge.config.load import load_config, load_profile, resolve_profile_path
from edge.config.redact import redacted
from edge.errors import ConfigError


@click.command("validate")
@click.argument("config", type=click.Path(path_type=Path), required=False)
@click.option("--profile", "profile_name", help="Validate a device profile (shipped name or file) alone.")
@click.option("--show", is_flag=True, help="Print the effective config, secrets redacted.")
def validate_cmd(config: Path | None, profile_name: str | None, show: bool) -> int:
    """Check CONFIG (and the profile it names) and print every problem at once."""
    if profile_name:
        path = resolve_profile_path(profile_name)
        profile = load_profile(path)
        problems = validate_profile(profile)
        if problems:
            raise ConfigError(str(path), problems)
        click.echo(f"{path}: valid profile {profile.board.id!r} ({profile.board.name})")
        return 0
    if config is None:
        raise click.UsageError("give a CONFIG file or --profile NAME")
    cfg, profile = load_config(config)
    click.echo(f"{config}: valid (site {cfg.device.site!r}, profile {profile.board.id!r})")
    if show:
        click.echo(json.dumps(redacted(cfg), indent=2))
    return 0
