"""A live broker test with paho-mqtt 2.x over MQTT v5: TCP/TLS, CONNACK, and one QoS 1 publish.

Connected is believed only after a CONNACK with a success reason code; the publish is believed
only after a PUBACK with a success reason code (Mosquitto 2.0 answers a v5 publish its ACL denies
with 0x87 Not authorized). Brokers or bridges may instead acknowledge and drop, so the probe also
subscribes to its own test topic first: where the ACL lets the device read it, the message must
come back. Each failure carries the fix an installer can act on.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ConfigError, ConfigProblem
from edge.transport.mqtt import guarded

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
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    target = parse_url(url)
    result = ProbeResult(ok=False, stage="connect")
    connected = threading.Event()
    published = threading.Event()
    subscribed = threading.Event()
    echoed = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        outcome["connack"] = reason_code
        connected.set()

    def on_publish(client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        outcome["puback"] = reason_code
        published.set()

    def on_disconnect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not connected.is_set():
            outcome["closed_early"] = reason_code
            connected.set()

    def on_subscribe(client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        outcome["suback"] = reason_codes
        subscribed.set()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        if message.topic == topic:
            echoed.set()

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = guarded("on_connect", on_connect, logger=log)
    client.on_publish = guarded("on_publish", on_publish, logger=log)
    client.on_subscribe = guarded("on_subscribe", on_subscribe, logger=log)
    client.on_disconnect = guarded("on_disconnect", on_disconnect, logger=log)
    client.on_message = guarded("on_message", on_message, logger=log)
    client.connect_timeout = timeout_s
    if username:
        client.username_pw_set(username, password)
    if target.tls:
        try:
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as exc:
            result.problem, result.reason = "tls", f"cannot load TLS files: {exc.__class__.__name__}"
            return result
    started = time.monotonic()
    try:
        client.connect(target.host, target.port, keepalive=30, clean_start=True)
    except socket.gaierror:
        result.problem, result.reason = "dns", f"cannot resolve {target.host}"
        return result
    except ConnectionRefusedError:
        result.problem, result.reason = "refused", f"connection to {target.host}:{target.port} refused"
        return result
    except ssl.SSLError as exc:
        result.problem, result.reason = "tls", f"TLS handshake failed: {exc.reason or exc.__class__.__name__}"
        return result
    except TimeoutError:
        result.problem, result.reason = "timeout", f"no answer from {target.host}:{target.port}"
        return result
    except OSError as exc:
        result.problem, result.reason = "refused", f"cannot connect: {exc.strerror or exc.__class__.__name__}"
        return result
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            result.problem, result.reason = "timeout", "no CONNACK within the timeout"
            return result
        if "connack" not in outcome:
            # TLS 1.3 reports a refused client certificate only by closing after the handshake.
            result.problem = "closed"
            result.reason = "the broker closed the connection before CONNACK"
            result.steps.append(("connect", False, result.reason))
            return result
        connack = outcome["connack"]
        result.connect_ms = (time.monotonic() - started) * 1000
        if connack.is_failure:
            value = int(connack.value)
            result.problem = "auth" if value in (0x86, 0x87, 0x8C) else "connack"
            result.reason = f"CONNACK {connack} (0x{value:02x})"
            result.steps.append(("connect", False, result.reason))
            return result
        result.steps.append(("connect", True, f"CONNACK success in {result.connect_ms:.0f} ms"))
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
