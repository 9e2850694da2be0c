"""``edge-provision osdp-key``: the Secure Channel base key this reader shares with the panel.

Three ways in, as panels offer them:

* ``--hex-stdin``: the panel's configuration holds a key for this reader; type or pipe its 32 hex
  digits (read from standard input, never from the command line, so it stays out of shell history).
* ``--generate``: make a random key here and show it once, to enter in the panel's reader setup.
* ``--install-mode``: the panel sends its key itself. The reader listens on ``[door] port`` without a
  key; the panel (put in its own install mode for this reader) opens a session with the standard's
  default key SCBK-D and sends KEYSET; the key is stored and the command ends. Do this on a bench or
  a bus nobody else can reach: the session it runs in is keyed with a published key.

The key is written 0600 to ``StateDir.osdp_scbk`` and is never logged; ``--status`` shows a key id
(8 hex digits of a digest) to compare two copies without revealing either.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from edge.errors import EdgeError, StorageError
from edge.state import StateDir
from provisioning.common import EXIT_INCOMPLETE, EXIT_OK, json_option, print_json, state_of, state_option


def _status(state: StateDir) -> dict[str, object]:
    from edge.osdp import scbk

    path = state.osdp_scbk
    doc: dict[str, object] = {"path": str(path), "installed": path.exists()}
    if path.exists():
        try:
            doc["key_id"] = scbk.key_id(scbk.read(path))
        except EdgeError as exc:
            doc["problem"] = exc.one_line()
    return doc


def install_mode(state: StateDir, timeout_s: float, *, say: object = click.echo) -> bytes:
    """Run the reader without a key until the panel's KEYSET arrives; the key, stored."""
    from edge.config.load import load_config
    from edge.door.modes import osdp_port
    from edge.osdp import scbk
    from edge.osdp.channel import SerialChannel
    from edge.osdp.pd import OsdpPeripheral

    config, profile = load_config(state.settings)
    if config.door.mode != "osdp":
        raise StorageError(
            f"[door] mode is {config.door.mode!r}, not 'osdp'", hint="set [door] mode = 'osdp' and its port first"
        )
    port = osdp_port(config.door, profile)
    got: list[bytes] = []

    def store(key: bytes) -> None:
        scbk.write(state.osdp_scbk, key, overwrite=True)
        got.append(key)

    pd = OsdpPeripheral(
        SerialChannel.open(port, config.door.baud, rs485_rts=config.door.rs485_rts),
        address=config.door.address,
        scbk=None,
        secure=False,
        on_keyset=store,
    )
    pd.start()
    try:
        if callable(say):
            say(
                f"install mode on {port} (address {config.door.address}, {config.door.baud} baud): waiting for the panel's KEYSET"
            )
        deadline = time.monotonic() + timeout_s
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pd.close()
    if not got:
        raise StorageError(
            f"no key from the panel in {timeout_s:.0f} s",
            hint="put the panel's reader port in install mode (SCBK-D) for this address, check wiring and baud",
        )
    return got[0]


@click.command("osdp-key")
@click.option("--hex-stdin", is_flag=True, help="Read the panel's key for this reader (32 hex digits) from stdin.")
@click.option("--generate", is_flag=True, help="Make a random key and show it once, to enter in the panel.")
@click.option("--install-mode", "install", is_flag=True, help="Take the key the panel sends (KEYSET over SCBK-D).")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, help="Install mode: seconds to wait.")
@click.option("--remove", is_flag=True, help="Delete the installed key.")
@click.option("--force", is_flag=True, help="Replace an installed key.")
@state_option
@json_option
def osdp_key_cmd(
    hex_stdin: bool,
    generate: bool,
    install: bool,
    timeout_s: float,
    remove: bool,
    force: bool,
    state_dir: Path,
    as_json: bool,
) -> int:
    """Install, show or remove the OSDP Secure Channel key ([door] mode = "osdp"); with no option, show its id."""
    from edge.osdp import scbk

    state = state_of(state_dir)
    if not state.root.exists():
        raise StorageError(f"{state.root} does not exist", hint="run `edge-provision init` first")
    chosen = [
        name
        for name, on in (
            ("--hex-stdin", hex_stdin),
            ("--generate", generate),
            ("--install-mode", install),
            ("--remove", remove),
        )
        if on
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of {', '.join(chosen)}")
    path = state.osdp_scbk
    if (hex_stdin or generate or install) and path.exists() and not force:
        raise StorageError(f"{path} already holds a key", hint="pass --force to replace it")
    shown: str | None = None
    if remove:
        if path.exists():
            from provisioning.cmd_reset import _shred

            _shred(path)
    elif hex_stdin:
        scbk.write(path, scbk.parse_hex(sys.stdin.readline()), overwrite=force)
    elif generate:
        key = scbk.generate()
        scbk.write(path, key, overwrite=force)
        shown = key.hex()
    elif install:
        install_mode(state, timeout_s, say=None if as_json else click.echo)
    doc = _status(state)
    if as_json:
        print_json(doc | ({"key_hex_shown_once": shown} if shown else {}))
    else:
        if shown:
            click.echo(f"new key (enter it in the panel's setup for this reader; it is not shown again): {shown}")
        if doc["installed"]:
            click.echo(f"OSDP key installed at {doc['path']} (0600), key id {doc.get('key_id', '?')}")
        else:
            click.echo("no OSDP key installed: edge-provision osdp-key --hex-stdin | --generate | --install-mode")
    return EXIT_OK if doc["installed"] or remove else EXIT_INCOMPLETE
