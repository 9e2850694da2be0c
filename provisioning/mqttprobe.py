"""A live broker test with paho-mqtt 2.x over MQTT v5: TCP/TLS, CONNACK, and one QoS 1 publish.

Connected is believed only after a CONNACK with a success reason code; the publish is believed
only after a PUBACK with a success reason code (Mosquitto 2.0 answers a v5 publish its ACL denies
with 0x87 Not authorized). Brokers or bridges may instead acknowledge and drop, so the probe also
subscribes to its own test topic first: where the ACL lets the device read it, the message must
come back. Each failure carries the fix an installer can act on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ConfigError, ConfigProblem
from edge.transport.mqtt import ConnectFailed, MqttSettings, connect, guarded, make_client

log = logging.getLogger(__name__)

FIXES = {
    "dns": "check the host name in the broker URL and the terminal's DNS",
    "refused": "nothing listens there: check the URL's port and that the broker runs",
    "timeout": "the broker did not answer: check the firewall and the URL",
    "tls": "pin the broker's CA with `edge-provision trust --broker-ca FILE` and check the URL's host name",
    "auth": "the broker refused the credentials: check username/password or the client certificate",
    "acl": "the broker's ACL does not let this device publish under its own topic: fix the ACL",
    "connack": "the broker refused the connection; see the reason",
    "closed": "the broker requires a client certificate it trusts (--cert/--key), or its log says why it closed",
    "publish": "the broker did not acknowledge the test publish",
}


@dataclass
class BrokerUrl:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


def parse_url(url: str) -> BrokerUrl:
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("mqtt", "mqtts"):
        problem = "a URL starting with mqtt:// or mqtts://"
    elif not parts.hostname:
        problem = "a host name, e.g. mqtts://broker.example:8883"
    elif parts.username or parts.password:
        problem = "no credentials in the URL (use --username and --password-stdin)"
    if problem is None:
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            problem = "a port between 1 and 65535"
    if problem is not None:
        shown = url if "@" not in url else "(URL with credentials, not shown)"
        raise ConfigError("broker", [ConfigProblem("broker", "mqtt.url", problem, shown)])
    assert parts.hostname is not None
    return BrokerUrl(parts.scheme, parts.hostname, port)


@dataclass
class ProbeResult:
    ok: bool
    stage: str  # "connect", "publish" or "done"
    problem: str = ""  # a FIXES key
    reason: str = ""
    connect_ms: float | None = None
    publish_ms: float | None = None
    delivery_verified: bool = False
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def fix(self) -> str:
        return FIXES.get(self.problem, "")


def probe_broker(
    url: str,
    *,
    client_id: str,
    topic: str,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    timeout_s: float = 10.0,
) -> ProbeResult:
    """Connect through the agent's own connect path (``edge.transport.mqtt``), then publish once."""
    import paho.mqtt.client as mqtt

    target = parse_url(url)
    settings = MqttSettings(
        host=target.host,
        port=target.port,
        tls=target.tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        username=username or None,
        password=password if username else None,
        connect_timeout_s=timeout_s,
    )
    result = ProbeResult(ok=False, stage="connect")
    published = threading.Event()
    subscribed = threading.Event()
    echoed = threading.Event()
    outcome: dict[str, Any] = {}

    def on_publish(_client: Any, _userdata: Any, _mid: int, reason_code: Any, _properties: Any) -> None:
        outcome["puback"] = reason_code
        published.set()

    def on_subscribe(_client: Any, _userdata: Any, _mid: int, reason_codes: Any, _properties: Any) -> None:
        outcome["suback"] = reason_codes
        subscribed.set()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == topic:
            echoed.set()

    started = time.monotonic()
    try:
        client = make_client(settings, client_id)
        connect(client, settings)
    except ConnectFailed as exc:
        result.problem, result.reason = exc.problem, exc.reason
        if exc.problem in ("closed", "auth", "connack"):
            result.steps.append(("connect", False, result.reason))
        return result
    result.connect_ms = (time.monotonic() - started) * 1000
    result.steps.append(("connect", True, f"CONNACK success in {result.connect_ms:.0f} ms"))
    client.on_publish = guarded("on_publish", on_publish, logger=log)
    client.on_subscribe = guarded("on_subscribe", on_subscribe, logger=log)
    client.on_message = guarded("on_message", on_message, logger=log)
    client.loop_start()
    try:
        result.stage = "publish"
        client.subscribe(topic, qos=1)
        can_read = subscribed.wait(timeout_s) and not any(rc.is_failure for rc in outcome.get("suback", []))
        sent = time.monotonic()
        info = client.publish(topic, b"edge-provision broker test", qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            result.problem, result.reason = "publish", f"publish not sent (rc {info.rc})"
            return result
        if not published.wait(timeout_s):
            result.problem, result.reason = "publish", "no PUBACK within the timeout"
            return result
        puback = outcome["puback"]
        result.publish_ms = (time.monotonic() - sent) * 1000
        if puback.is_failure:
            value = int(puback.value)
            result.problem = "acl" if value == 0x87 else "publish"
            result.reason = f"PUBACK {puback} (0x{value:02x}) on {topic}"
            result.steps.append(("publish", False, result.reason))
            return result
        result.steps.append(("publish", True, f"PUBACK success in {result.publish_ms:.0f} ms on {topic}"))
        if can_read:
            if not echoed.wait(min(timeout_s, 3.0)):
                result.problem = "acl"
                result.reason = f"PUBACK success but the message never arrived on {topic}: the broker dropped it"
                result.steps.append(("delivery", False, result.reason))
                return result
            result.delivery_verified = True
            result.steps.append(("delivery", True, "the test message came back through the broker"))
        else:
            result.steps.append(("delivery", True, "not verified: the ACL does not let this device read its topic"))
        result.ok, result.stage = True, "done"
        return result
    finally:
        client.disconnect()
        client.loop_stop()
