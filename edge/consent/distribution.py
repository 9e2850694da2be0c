"""Distributing lists over MQTT: retained messages on ``sites/{site}/consent`` (and its chunks).

The authority publishes the latest snapshot retained (MQTT v5, QoS 1), so a device that connects
at any time receives it at once; the ledger treats a redelivery of the list in force as a no-op.
A list that fits one packet of the broker (at most ``SINGLE_MESSAGE_MAX``, 512 KiB) is the
message itself, as older terminals expect; a larger one is a signed manifest on that topic and
chunks named by hash on ``sites/{site}/consent/chunks/{sha256}`` (``edge.consent.chunks``), so a
list of any size passes a broker that refuses packets over 1 MiB. Chunks of the list replaced are
cleared (empty retained messages) once the new manifest is in place. A broker refusal (a PUBACK
reason code, or the broker closing the connection on an oversize packet) is a ``TransportError``.

Deltas are for ``edge consent apply`` only: a retained delta would strand any device not holding
its base. Connections go through the product's one connect path (``edge.transport.mqtt``:
``make_client`` + ``connect``) and the topics come from ``edge.transport.topics``; paho-mqtt is
imported inside the functions (CLI modules stay light) and driven with ``loop()`` in the calling
thread, so nothing here starts a thread.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import TransportError
from edge.transport import topics

if TYPE_CHECKING:
    from nacl.signing import SigningKey, VerifyKey

    from edge.state import StateDir
    from edge.transport.mqtt import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Broker:
    """The site tools' broker: a URL and the authority's credentials."""

    url: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    def __repr__(self) -> str:
        return f"Broker(url={self.url!r}, username={self.username!r})"

    def settings(self, timeout_s: float) -> MqttSettings:
        from edge.transport.mqtt import MqttSettings

        return MqttSettings.from_url(
            self.url, username=self.username, password=self.password, ca_file=self.ca_file, connect_timeout_s=timeout_s
        )


@dataclass(frozen=True)
class Published:
    """What ``publish_list`` put on the broker."""

    topic: str
    size: int
    chunks: int  # 0: one message
    chunk_bytes: int
    cleared: int  # chunk topics of the previous list emptied
    seconds: float


def _connect(broker: Broker, client_prefix: str, timeout_s: float) -> Any:
    """A connected client (see ``_connect_limits``)."""
    return _connect_limits(broker, client_prefix, timeout_s)[0]


def _connect_limits(broker: Broker, client_prefix: str, timeout_s: float) -> tuple[Any, int | None]:
    """A connected client and the broker's Maximum Packet Size (CONNACK property), if it sent one."""
    from edge.transport.mqtt import connect, make_client

    settings = broker.settings(timeout_s)
    client = make_client(settings, f"{client_prefix}-{secrets.token_hex(4)}")
    connack = connect(client, settings)
    return client, connack.max_packet_size


class _Sender:
    """QoS 1 publishes with at most ``window`` in flight, each PUBACK's reason code checked."""

    def __init__(self, client: Any, timeout_s: float, window: int = 8) -> None:
        from edge.transport.mqtt import guarded

        self.client = client
        self.timeout_s = timeout_s
        self.window = window
        self.acked: dict[int, Any] = {}
        self.pending: dict[int, str] = {}
        client.on_publish = guarded("on_publish", self._on_publish, logger=log)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: Any, _p: Any) -> None:
        self.acked[mid] = reason_code

    def send(self, topic: str, payload: bytes) -> None:
        while len(self.pending) >= self.window:
            self._pump()
        import paho.mqtt.client as mqtt

        info = self.client.publish(topic, payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError(
                f"the broker closed the connection while we published to {topic} ({mqtt.error_string(info.rc)})",
                hint="a packet over the broker's max_packet_size is refused this way; check the broker log",
            )
        self.pending[info.mid] = topic

    def _pump(self) -> None:
        import paho.mqtt.client as mqtt

        deadline = time.monotonic() + self.timeout_s
        while not any(mid in self.acked for mid in self.pending):
            rc = self.client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise TransportError(
                    f"the broker closed the connection while we published ({mqtt.error_string(rc)})",
                    hint="a packet over the broker's max_packet_size is refused this way; check the broker log",
                )
            if time.monotonic() > deadline:
                raise TransportError(f"no PUBACK within {self.timeout_s} s")
        for mid in [m for m in self.pending if m in self.acked]:
            topic = self.pending.pop(mid)
            code = self.acked.pop(mid)
            if getattr(code, "is_failure", False):
                raise TransportError(
                    f"the broker refused the publish on {topic}: {code}",
                    hint="check the broker's ACL for the authority user",
                )

    def drain(self) -> None:
        while self.pending:
            self._pump()


def _retained(client: Any, topic: str, settle_s: float, timeout_s: float) -> bytes | None:
    """The message retained on ``topic`` now, on an already connected client (then unsubscribed)."""
    from edge.transport.mqtt import guarded

    got: list[bytes] = []
    subscribed: list[bool] = []
    client.on_message = guarded(
        "on_message", lambda _c, _u, msg: got.append(bytes(msg.payload)) if msg.topic == topic else None, logger=log
    )
    client.on_subscribe = guarded("on_subscribe", lambda *_a: subscribed.append(True), logger=log)
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    while not got and time.monotonic() < deadline:
        client.loop(timeout=0.05)
        if subscribed and settle is None:
            settle = time.monotonic() + settle_s
        if settle is not None and time.monotonic() > settle:
            break
    client.unsubscribe(topic)
    client.on_message = None
    return got[0] if got else None


def publish_list(
    broker: Broker,
    site: str,
    message: bytes,
    *,
    timeout_s: float = 10.0,
    signing_key: SigningKey | None = None,
    version: int | None = None,
    chunk_size: int | None = None,
) -> str:
    """Publish a signed list retained; returns the topic. See ``publish_list_report``."""
    return publish_list_report(
        broker, site, message, timeout_s=timeout_s, signing_key=signing_key, version=version, chunk_size=chunk_size
    ).topic


def publish_list_report(
    broker: Broker,
    site: str,
    message: bytes,
    *,
    timeout_s: float = 10.0,
    signing_key: SigningKey | None = None,
    version: int | None = None,
    chunk_size: int | None = None,
) -> Published:
    """Publish ``message`` (a signed list) retained with QoS 1, waiting for every PUBACK.

    One message when it fits (``SINGLE_MESSAGE_MAX`` and the broker's announced packet limit);
    otherwise chunks, then a manifest signed with ``signing_key`` (the authority's key; required
    then) naming ``version``, then the previous list's chunks are cleared.
    """
    from edge.consent import chunks as chunking

    topic = topics.consent(site)  # a site that is not one topic level is refused before connecting
    started = time.monotonic()
    client, max_packet = _connect_limits(broker, f"consent-authority-{site}", timeout_s)
    limit = chunking.SINGLE_MESSAGE_MAX if max_packet is None else min(chunking.SINGLE_MESSAGE_MAX, max_packet - 1024)
    size = chunk_size or (chunking.CHUNK_SIZE if max_packet is None else min(chunking.CHUNK_SIZE, max_packet - 1024))
    try:
        previous = _retained(client, topic, 0.3, timeout_s)
        old = chunking.peek_manifest(previous) if previous else None
        sender = _Sender(client, timeout_s)
        parts: list[bytes] = []
        if len(message) <= limit and chunk_size is None:
            sender.send(topic, message)
        else:
            if signing_key is None or version is None:
                raise TransportError(
                    f"the list is {len(message)} bytes, over one message ({limit} bytes): it must be sent in chunks, "
                    "which needs the authority's signing key and the list version"
                )
            manifest, parts = chunking.split(message, site, version, size)
            for digest, part in zip(manifest.chunks, parts, strict=True):
                sender.send(chunking.chunk_topic(site, digest), part)
            sender.drain()  # every chunk is retained before the manifest names them
            sender.send(topic, chunking.sign_manifest(signing_key, manifest))
        sender.drain()
        keep = {chunking.chunk_topic(site, hashlib.sha256(p).digest()) for p in parts}
        cleared = 0
        if old is not None:
            for digest in dict.fromkeys(old.chunks):
                name = chunking.chunk_topic(site, digest)
                if name not in keep:
                    sender.send(name, b"")  # an empty retained message deletes the retained one
                    cleared += 1
            sender.drain()
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
    report = Published(topic, len(message), len(parts), size if parts else 0, cleared, time.monotonic() - started)
    log.info("published consent list to %s (%s bytes, %s chunks)", topic, len(message), len(parts))
    return report


def fetch_retained_list(
    broker: Broker,
    site: str,
    *,
    timeout_s: float = 10.0,
    keys: dict[bytes, VerifyKey] | None = None,
) -> bytes | None:
    """The list retained for ``site`` (joined from its chunks if it is chunked), or None.

    ``keys``: check a manifest's signature with them (a device does); without, it is only parsed.
    """
    from edge.consent.chunks import Reassembler
    from edge.transport.mqtt import guarded

    reassembler = Reassembler(site, (lambda: keys) if keys is not None else None)  # checks the site first
    client = _connect(broker, f"consent-fetch-{site}", timeout_s)
    got: list[bytes] = []
    subscribed: list[bool] = []

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        whole = reassembler.offer(msg.topic, bytes(msg.payload))
        if whole is not None:
            got.append(whole)

    client.on_message = guarded("on_message", on_message, logger=log)
    client.on_subscribe = guarded("on_subscribe", lambda *_a: subscribed.append(True), logger=log)
    try:
        client.subscribe([(topic, 1) for topic in topics.consent_subscriptions(site)])
        deadline = time.monotonic() + timeout_s
        settle: float | None = None
        while not got and time.monotonic() < deadline:
            client.loop(timeout=0.05)
            if subscribed and settle is None:
                settle = time.monotonic() + 0.5
            if settle is not None and time.monotonic() > settle and reassembler.manifest is None:
                break
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
    return got[0] if got else None


def pinned_keys(state: StateDir) -> Callable[[], dict[bytes, VerifyKey]]:
    """The device's pinned authority keys, read when a manifest arrives (rotation included)."""
    from edge.consent import trust

    return lambda: trust.load_pinned(state)


class ConsentReceiver:
    """A device's MQTT handler for its site's consent topics: joins chunked lists, then ``deliver``.

    ``on_message(topic, payload, retained)`` runs on the MQTT thread; it only hashes and buffers
    chunks and checks a manifest's signature, and hands whole list messages to ``deliver`` (the
    consent service's queue), whose thread verifies and applies them. Never raises.
    """

    def __init__(self, site: str, keys: Callable[[], dict[bytes, VerifyKey]], deliver: Callable[[bytes], None]) -> None:
        from edge.consent.chunks import Reassembler

        self.reassembler = Reassembler(site, keys)
        self.deliver = deliver

    def on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        try:
            whole = self.reassembler.offer(topic, payload)
        except Exception as exc:  # a pinned key file gone bad must not stop the MQTT thread
            log.error("consent list reassembly failed (%s)", exc.__class__.__name__)
            return
        if whole is not None:
            self.deliver(whole)
