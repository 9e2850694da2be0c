"""``edge run``: the agent as systemd runs it (Type=notify, watchdog, SIGTERM = orderly stop)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/var/lib/gate-edge/edge.toml"),
    envvar="EDGE_CONFIG",
    show_default=True,
    help="The settings file edge-provision wrote (or any agent config).",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option("--plain-logs", is_flag=True, help="Human-readable log lines instead of JSON.")
@click.option(
    "--wiring",
    default="edge.agent.wiring:build",
    show_default=True,
    envvar="EDGE_WIRING",
    help="module:function returning the gate's ports (the demo and tests pass their own).",
)
def run_cmd(config_path: Path, log_level: str, plain_logs: bool, wiring: str) -> int:
    """Run the gate agent until SIGTERM or SIGINT."""
    import importlib

    from edge.agent.wired import Wired
    from edge.agent.wiring import run_agent
    from edge.config.load import load_config
    from edge.ops import safemode
    from edge.ops.logs import setup_logging
    from edge.ops.notify import Notifier
    from edge.state import StateDir

    redactor = setup_logging(log_level, json_lines=not plain_logs)
    config, profile = load_config(config_path)
    state = StateDir(config.device.state_dir)
    state.ensure()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    notifier = Notifier()
    try:
        module_name, _, attr = wiring.partition(":")
        build = getattr(importlib.import_module(module_name), attr)

        def run(
            wired: Wired, on_ready: Callable[[], None], safe_status: str | None, on_stop: Callable[[], None]
        ) -> int:
            hook = safemode.ReadyHook(notifier, on_ready, safe_status, on_stop)
            return run_agent(config, profile, wired, notifier=hook, stop=stop, protect=redactor.protect)

        # the same start-up failure 3 times: safe mode (credential path only) instead of a crash loop
        return safemode.start(config, profile, state, build, run)
    finally:
        notifier.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
