"""Options, exit codes and output helpers every ``edge-provision`` command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from edge.state import StateDir
from provisioning.files import DEFAULT_STATE_DIR

EXIT_OK = 0
EXIT_ERROR = 1  # something failed; the message says what and what to do
EXIT_USAGE = 2  # click's own code for bad options
EXIT_INCOMPLETE = 3  # ran fine, but the terminal is not ready: a check failed or a step is missing

F = TypeVar("F", bound=Callable[..., Any])


def state_option(func: F) -> F:
    return click.option(
        "--state-dir",
        "state_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_STATE_DIR,
        envvar="EDGE_STATE_DIR",
        show_default=True,
        show_envvar=True,
        help="The agent's state directory.",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(func)


def state_of(path: Path) -> StateDir:
    return StateDir(path.expanduser().absolute())


def print_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    Console(file=sys.stdout, width=120).print(out)


def mode_of(path: Path) -> str:
    try:
        return f"{path.stat().st_mode & 0o777:04o}"
    except FileNotFoundError:
        return "-"
