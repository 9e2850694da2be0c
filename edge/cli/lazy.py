"""A click group whose subcommands live in their own modules and are imported only when run.

``--help`` lists subcommands from the table without importing them, so it stays instant even
when a subcommand needs OpenCV, LiteRT or the MQTT client.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from edge.errors import ConfigError, EdgeError


class LazyGroup(click.Group):
    def __init__(self, *args: object, lazy: dict[str, tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy  # name -> ("module:attribute", short help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            target, _ = self.lazy[cmd_name]
            module_name, attr = target.split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, _ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in sorted(self.commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


def run(group: click.Command, argv: Sequence[str] | None, prog: str) -> int:
    """Run a click command as ``main(argv) -> int``: one line per error unless --verbose."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    try:
        result = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem.render()}", err=True)
        return 1
    except EdgeError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        if verbose:
            raise
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0


def exit_code(value: int) -> int:
    """Commands return their exit code; click's standalone_mode=False passes it back to ``run``."""
    return value
