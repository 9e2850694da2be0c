"""``edge-provision broker``: URL and credentials, saved only after a live connection test passes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edge.crypto.keys import device_id, load_signing_key, write_secret
from edge.state import StateDir, atomic_write
from provisioning.common import EXIT_INCOMPLETE, EXIT_OK, json_option, print_json, state_of, state_option, table
from provisioning.files import read_settings, save_settings, section
from provisioning.mqttprobe import ProbeResult, parse_url, probe_broker

CLIENT_CERT = "client-cert.pem"
CLIENT_KEY = "client.key"


def selftest_topic(site: str, device: str) -> str:
    return f"sites/{site}/gates/{device}/selftest"


def probe_settings(state: StateDir, mqtt: dict[str, Any], site: str, timeout_s: float) -> ProbeResult:
    """Probe the broker the settings describe (selftest uses this too)."""
    device = device_id(load_signing_key(state.identity_key).verify_key)

    def path(key: str) -> Path | None:
        value = mqtt.get(key)
        return Path(value) if value else None

    return probe_broker(
        str(mqtt.get("url", "mqtt://127.0.0.1:1883")),
        client_id=device,
        topic=selftest_topic(site, device),
        username=mqtt.get("username"),
        password=mqtt.get("password"),
        ca_file=path("ca_file"),
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        timeout_s=timeout_s,
    )


@click.command("broker")
@click.option("--url", help="mqtt://host:port or mqtts://host:port.")
@click.option("--username", help="MQTT username (omit for certificate authentication).")
@click.option("--password-stdin", is_flag=True, help="Read the MQTT password from standard input.")
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Client certificate (PEM) for mTLS.",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Client private key (PEM) for mTLS.",
)
@click.option("--no-test", is_flag=True, help="Save without the live test (e.g. installing offline).")
@click.option("--timeout", "timeout_s", default=10.0, show_default=True, help="Seconds to wait for the broker.")
@state_option
@json_option
def broker_cmd(
    url: str | None,
    username: str | None,
    password_stdin: bool,
    cert_file: Path | None,
    key_file: Path | None,
    no_test: bool,
    timeout_s: float,
    state_dir: Path,
    as_json: bool,
) -> int:
    """Set the broker and test it live: CONNACK, then a QoS 1 publish under this device's topic.

    With no --url, test the broker already configured. Settings change only when the test passes.
    """
    state = state_of(state_dir)
    doc = read_settings(state)
    mqtt = dict(section(doc, "mqtt"))
    if url is not None:
        parse_url(url)
        mqtt["url"] = url
    if username is not None:
        mqtt["username"] = username
    if password_stdin:
        mqtt["password"] = sys.stdin.readline().rstrip("\r\n")
    if (cert_file is None) != (key_file is None):
        raise click.UsageError("--cert and --key go together")
    if parse_url(str(mqtt.get("url", "mqtt://127.0.0.1:1883"))).tls and state.broker_ca.exists():
        mqtt.setdefault("ca_file", str(state.broker_ca))
    staged: dict[Path, tuple[bytes, int]] = {}
    if cert_file is not None and key_file is not None:
        staged[state.trust_dir / CLIENT_CERT] = (cert_file.read_bytes(), 0o644)
        staged[state.root / CLIENT_KEY] = (key_file.read_bytes(), 0o600)
        # Test with the installer's files; the copies in the state dir are written only on success.
        mqtt["cert_file"], mqtt["key_file"] = str(cert_file), str(key_file)
    site = str(doc.get("device", {}).get("site", ""))
    result = None if no_test else probe_settings(state, mqtt, site, timeout_s)
    if result is not None and not result.ok:
        report(result, as_json, saved=False)
        return EXIT_INCOMPLETE
    for target, (data, mode) in staged.items():
        if mode == 0o600:
            write_secret(target, data, overwrite=True)
        else:
            atomic_write(target, data, mode)
    if staged:
        mqtt["cert_file"], mqtt["key_file"] = str(state.trust_dir / CLIENT_CERT), str(state.root / CLIENT_KEY)
    doc["mqtt"] = mqtt
    save_settings(state, doc)
    if result is None:
        if as_json:
            print_json({"ok": True, "tested": False, "url": mqtt["url"]})
        else:
            click.echo(f"broker {mqtt['url']} saved without a test; run `edge-provision broker` when online")
        return EXIT_OK
    report(result, as_json, saved=True)
    return EXIT_OK


def report(result: ProbeResult, as_json: bool, *, saved: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "saved": saved,
                "stage": result.stage,
                "problem": result.problem,
                "reason": result.reason,
                "fix": result.fix,
                "connect_ms": result.connect_ms,
                "publish_ms": result.publish_ms,
                "delivery_verified": result.delivery_verified,
            }
        )
        return
    rows = [(step, "pass" if ok else "FAIL", detail) for step, ok, detail in result.steps]
    if not result.ok and not any(not ok for _, ok, _ in result.steps):
        rows.append((result.stage, "FAIL", result.reason))
    table("Broker test", ["step", "result", "detail"], rows)
    if result.ok:
        click.echo("broker settings saved" if saved else "broker test passed")
    else:
        click.echo(f"fix: {result.fix}")
        click.echo("nothing was changed")
