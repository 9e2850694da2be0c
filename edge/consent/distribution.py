"""Distributing lists over MQTT: one retained message per site on ``sites/{site}/consent``.

The authority publishes the latest snapshot retained (MQTT v5, QoS 1), so a device that connects
at any time receives it at once; the ledger treats a redelivery of the list in force as a no-op.
Deltas are for ``edge consent apply`` only: a retained delta would strand any device not holding
its base. paho-mqtt is imported inside the functions (CLI modules stay light) and driven with
``loop()`` in the calling thread, so nothing here starts a thread.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import TransportError

log = logging.getLogger(__name__)


def consent_topic(site: str) -> str:
    return f"sites/{site}/consent"


@dataclass(frozen=True)
class Broker:
    url: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    def __repr__(self) -> str:
        return f"Broker(url={self.url!r}, username={self.username!r})"


def _connect(broker: Broker, client_prefix: str, timeout_s: float) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(broker.url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise TransportError(f"{broker.url!r} is not an mqtt:// or mqtts:// URL", hint="e.g. mqtt://127.0.0.1:1883")
    port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{client_prefix}-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if parts.scheme == "mqtts":
        client.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None)
    state: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        state["rc"] = reason_code

    client.on_connect = on_connect
    try:
        client.connect(parts.hostname, port, keepalive=30)
    except OSError as exc:
        raise TransportError(
            f"cannot reach the broker at {parts.hostname}:{port} ({exc.__class__.__name__})",
            hint="check the URL and that the broker is running",
        ) from None
    deadline = time.monotonic() + timeout_s
    while "rc" not in state:
        if time.monotonic() > deadline:
            client.disconnect()
            raise TransportError(f"no CONNACK from {parts.hostname}:{port} within {timeout_s} s")
        client.loop(timeout=0.05)
    if state["rc"].is_failure:
        client.disconnect()
        raise TransportError(f"the broker refused the connection ({state['rc']})", hint="check username/password")
    return client


def publish_list(broker: Broker, site: str, message: bytes, *, timeout_s: float = 10.0) -> str:
    """Publish ``message`` retained with QoS 1 and wait for PUBACK; returns the topic."""
    client = _connect(broker, f"consent-authority-{site}", timeout_s)
    topic = consent_topic(site)
    try:
        info = client.publish(topic, message, qos=1, retain=True)
        deadline = time.monotonic() + timeout_s
        while not info.is_published():
            if time.monotonic() > deadline:
                raise TransportError(f"no PUBACK for {topic} within {timeout_s} s")
            client.loop(timeout=0.05)
        if info.rc != 0:
            raise TransportError(f"publishing to {topic} failed (code {info.rc})")
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
    log.info("published consent list to %s (%s bytes)", topic, len(message))
    return topic


def fetch_retained_list(broker: Broker, site: str, *, timeout_s: float = 10.0) -> bytes | None:
    """The retained list for ``site``, or None when the broker holds none within ``timeout_s``."""
    client = _connect(broker, f"consent-fetch-{site}", timeout_s)
    topic = consent_topic(site)
    got: list[bytes] = []
    subscribed: list[bool] = []

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == topic:
            got.append(bytes(msg.payload))

    def on_subscribe(_c: Any, _u: Any, _mid: Any, _codes: Any, _props: Any) -> None:
        subscribed.append(True)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    try:
        client.subscribe(topic, qos=1)
        deadline = time.monotonic() + timeout_s
        # the retained message arrives right after SUBACK; give it a short moment beyond that
        settle: float | None = None
        while not got and time.monotonic() < deadline:
            client.loop(timeout=0.05)
            if subscribed and settle is None:
                settle = time.monotonic() + 0.5
            if settle is not None and time.monotonic() > settle:
                break
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
    return got[0] if got else None
