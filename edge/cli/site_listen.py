"""``edge-site listen``: verify signed events from the broker and write them as JSON lines.

Several instances given the same ``--share`` group split the events between them (MQTT v5 shared
subscription ``$share/GROUP/sites/+/gates/+/events/#``). With ``--client-id`` the broker keeps the
instance's session (and queues its events) while it is away. ``--count``/``--timeout`` bound a run
for tests and the demo: exit 0 once COUNT events are verified, 1 when the timeout passes first.

Poison messages are dead-lettered: whatever a message holds, the verifier either writes the event
or records the refusal (reason, topic, size, SHA-256 of the payload; never the payload) in
``--rejects`` and the log, and returns, so paho acknowledges it (QoS 1 PUBACK) and the broker
never delivers it again, persistent session or not. No input ends the process.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import click

log = logging.getLogger(__name__)


@click.command("listen")
@click.option("--broker", "broker_url", required=True, help="mqtt://host:port or mqtts://host:port")
@click.option(
    "--registry", "registry_path", type=click.Path(path_type=Path), required=True, help="Device registry JSON."
)
@click.option(
    "--out", "out_path", type=click.Path(path_type=Path), default=None, help="JSON-lines output (default stdout)."
)
@click.option(
    "--rejects",
    "--dead-letter",
    "rejects_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Dead letters: one JSON line per refused message (reason, topic, size, sha256; never its content).",
)
@click.option(
    "--share", "share", default=None, help="Shared-subscription group: instances in one group split the load."
)
@click.option("--site", default="+", show_default=True, help="Only this site's events.")
@click.option("--ca", "ca_file", type=click.Path(path_type=Path), default=None, help="Broker CA (PEM).")
@click.option("--cert", "cert_file", type=click.Path(path_type=Path), default=None, help="Client certificate (mTLS).")
@click.option("--key", "key_file", type=click.Path(path_type=Path), default=None, help="Client key (mTLS).")
@click.option("--username", default=None)
@click.option(
    "--password-env", default="EDGE_SITE_MQTT_PASSWORD", show_default=True, help="Read the password from this env var."
)
@click.option("--client-id", default=None, help="Fixed client id: the broker keeps this session while away.")
@click.option("--count", type=int, default=None, help="Exit 0 after this many verified events.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Exit 1 if --count is not reached in this time.")
def listen_cmd(
    broker_url: str,
    registry_path: Path,
    out_path: Path | None,
    rejects_path: Path | None,
    share: str | None,
    site: str,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    username: str | None,
    password_env: str,
    client_id: str | None,
    count: int | None,
    timeout_s: float | None,
) -> int:
    """Verify signed events and write them as JSON lines."""
    import os

    from edge.site.registry import Registry
    from edge.site.verifier import Verifier
    from edge.transport.mqtt import MqttSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = MqttSettings.from_url(
        broker_url,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        username=username,
        password=os.environ.get(password_env) if username else None,
    )
    verifier = Verifier(Registry.load(registry_path))
    out = out_path.open("a", encoding="utf-8") if out_path else sys.stdout
    rejects = rejects_path.open("a", encoding="utf-8") if rejects_path else None
    try:
        listener = Listener(settings, verifier, out, rejects, share=share, site=site, client_id=client_id)
        accepted = listener.run(count=count, timeout_s=timeout_s)
    finally:
        if out_path:
            out.close()
        if rejects is not None:
            rejects.close()
    click.echo(f"verified {accepted} events, rejected {listener.rejected}", err=True)
    return 1 if count is not None and accepted < count else 0


class Listener:
    """The subscribe-verify-write loop, reconnecting with backoff, on the calling thread."""

    def __init__(
        self,
        settings: Any,
        verifier: Any,
        out: IO[str],
        rejects: IO[str] | None,
        *,
        share: str | None,
        site: str,
        client_id: str | None,
    ) -> None:
        from edge.transport import topics

        self.settings = settings
        self.verifier = verifier
        self.out = out
        self.rejects = rejects
        topic_filter = topics.events_filter(site)
        self.subscription = topics.shared(share, topic_filter) if share else topic_filter
        self.client_id = client_id
        self.accepted = 0
        self.rejected = 0
        #: Set once the broker acknowledged the subscription (SUBACK).
        self.subscribed = threading.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Verify one message and write it out, or dead-letter it. Never raises."""
        from edge.site.verifier import Rejected

        try:
            event = self.verifier.verify(topic, payload)
        except Rejected as exc:
            self.dead_letter(topic, payload, exc.reason, exc.detail)
            return
        except Exception as exc:  # a verifier that is not total is a bug; the loop must go on
            self.dead_letter(topic, payload, "internal_error", exc.__class__.__name__)
            return
        self.accepted += 1
        self.out.write(event.to_json() + "\n")
        self.out.flush()

    def dead_letter(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        """Record a refused message: reason, topic, size and digest, never the payload itself."""
        import hashlib
        import json

        self.rejected += 1
        digest = hashlib.sha256(payload).hexdigest()
        shown = topic if len(topic) <= 200 else topic[:200] + "..."
        log.warning(
            "dead-lettered a message on %s (%s bytes, sha256 %s): %s: %s",
            shown,
            len(payload),
            digest[:16],
            reason,
            detail,
        )
        if self.rejects is not None:
            record = {
                "at": round(time.time(), 3),
                "topic": shown,
                "reason": reason,
                "detail": detail,
                "size": len(payload),
                "sha256": digest,
            }
            self.rejects.write(json.dumps(record, sort_keys=True) + "\n")
            self.rejects.flush()

    def run(self, *, count: int | None, timeout_s: float | None, stop: threading.Event | None = None) -> int:
        import secrets

        import paho.mqtt.client as paho

        from edge.errors import TransportError
        from edge.transport.mqtt import Backoff, close, connect, guarded, make_client

        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        backoff = Backoff(base_s=0.1, cap_s=1.0)
        persistent = self.client_id is not None
        client_id = self.client_id or f"edge-site-listen-{secrets.token_hex(4)}"

        def done() -> bool:
            return (
                (count is not None and self.accepted >= count)
                or (deadline is not None and time.monotonic() > deadline)
                or (stop is not None and stop.is_set())
            )

        while not done():
            client = make_client(self.settings, client_id)
            client.on_message = guarded(
                "on_message", lambda _c, _u, msg: self.on_message(msg.topic, bytes(msg.payload)), logger=log
            )

            def on_subscribe(*_args: object) -> None:
                log.info("subscribed to %s (SUBACK)", self.subscription)
                self.subscribed.set()

            client.on_subscribe = guarded("on_subscribe", on_subscribe, logger=log)
            try:
                connect(
                    client, self.settings, clean_start=not persistent, session_expiry_s=3600 if persistent else None
                )
                client.subscribe(self.subscription, qos=1)
                backoff.reset()
                log.info("listening on %s for %s", self.settings.describe(), self.subscription)
                while not done():
                    rc = client.loop(timeout=0.1)
                    if rc != paho.MQTT_ERR_SUCCESS:
                        raise TransportError(f"connection lost ({paho.error_string(rc)})")
                client.disconnect()
                client.loop(timeout=0.05)
            except TransportError as exc:
                log.warning("MQTT: %s", exc.one_line())
                time.sleep(backoff.next())
            finally:
                close(client)
        return self.accepted
