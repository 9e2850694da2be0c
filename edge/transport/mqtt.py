"""The product's one way to an MQTT v5 broker (paho-mqtt 2.x), and the publisher thread that
drains the outbox.

``make_client`` + ``connect`` are the only place a paho client is configured and connected: the
publisher, the site listener, ``publish_once``, the consent list tools
(``edge.consent.distribution``) and the installer's broker probe (``provisioning.mqttprobe``) all
go through them. ``connect`` believes a connection only after a CONNACK with a success reason code,
and a failure is a ``ConnectFailed`` naming what went wrong (``dns``, ``refused``, ``timeout``,
``tls``, ``closed``, ``auth``, ``connack``), so every caller can say the same thing to an installer.

Concurrency in one sentence: the caller only writes the SQLite outbox; one ``mqtt-publisher`` thread
owns the paho client (no paho threads: it drives ``Client.loop`` itself), connects with backoff,
sends outbox rows in order with at most ``window`` unacknowledged, and deletes rows on PUBACK.

Each connection uses a fresh paho client with a clean start, so after any reconnect the publisher
resends every row still in the outbox from the oldest; duplicates are possible and the verifier
drops them (cti and seq), losses are not.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import TransportError
from edge.transport import topics
from edge.transport.outbox import Entry, Outbox

log = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes, bool], None]


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` (logged instead of its message, which may quote data)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def guarded(name: str, callback: Callable[..., object], *, logger: logging.Logger | None = None) -> Callable[..., None]:
    """``callback`` made safe to hand to paho: an exception it raises is logged, never propagated.

    paho-mqtt re-raises what a callback raises out of ``Client.loop`` (and, for ``on_message``,
    before the QoS 1 PUBACK is sent): one bad message would end the network loop and, with a
    persistent session, come back at every reconnect. Every callback the product gives paho goes
    through here. The log line names the callback, the exception class and where it was raised,
    never the exception's message (it may quote the data that caused it).
    """
    out = logger or log

    def safe(*args: object) -> None:
        try:
            callback(*args)
        except Exception as exc:
            out.error(
                "MQTT %s handler raised %s at %s; the network loop goes on",
                name,
                exc.__class__.__name__,
                _where(exc),
            )

    return safe


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to connect. ``mqtts://`` means TLS (``ca_file`` is the broker's CA)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MqttSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise TransportError(f"broker URL {url!r} is not mqtt://host:port or mqtts://host:port")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise TransportError(f"broker URL {url!r} has a bad port") from None
        settings = cls(host=parts.hostname, port=port, tls=tls)
        return replace(settings, **kwargs)

    @classmethod
    def from_section(cls, section: Any) -> MqttSettings:
        """From the agent config's ``[mqtt]`` section (``edge.config.schema.MqttSection``)."""
        password = section.password.get_secret_value() if section.password is not None else None
        return cls.from_url(
            section.url,
            username=section.username,
            password=password,
            ca_file=section.ca_file,
            cert_file=section.cert_file,
            key_file=section.key_file,
            keepalive_s=section.keepalive_s,
        )

    def describe(self) -> str:
        """Where, for log lines and errors (never the password)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class ConnectFailed(TransportError):  # noqa: N818 - reads as what happened
    """No connection: ``problem`` says why (``dns``, ``refused``, ``timeout``, ``tls``, ``closed``,
    ``auth``, ``connack``), ``reason`` in a few words (never a password)."""

    def __init__(self, problem: str, message: str, *, reason: str = "", hint: str = "") -> None:
        self.problem = problem
        self.reason = reason or message
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class Connack:
    """What the broker's CONNACK said besides success."""

    max_packet_size: int | None  # the broker's Maximum Packet Size, when it announced one


#: CONNACK reason codes that mean the credentials were refused (bad user/password, not authorised, bad auth method)
AUTH_REFUSALS = frozenset({0x86, 0x87, 0x8C})


class Backoff:
    """Exponential backoff with full jitter: a random delay in [base/2, min(cap, base * 2**n)]."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return self.rng.uniform(min(self.base_s / 2, ceiling), ceiling)

    def reset(self) -> None:
        self.attempt = 0


def make_client(
    settings: MqttSettings,
    client_id: str,
    *,
    will: tuple[str, bytes] | None = None,
) -> Any:
    """A paho MQTT v5 client configured for TLS/credentials/last will, not yet connected."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect_timeout = settings.connect_timeout_s
    if settings.tls:
        if settings.ca_file is not None and not Path(settings.ca_file).exists():
            raise ConnectFailed("tls", f"broker CA file {settings.ca_file} is missing", hint="check [mqtt] ca_file")
        try:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConnectFailed("tls", f"cannot load TLS files: {exc.__class__.__name__}") from None
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


def connect(
    client: Any,
    settings: MqttSettings,
    *,
    clean_start: bool = True,
    session_expiry_s: int | None = None,
    stop: threading.Event | None = None,
) -> Connack:
    """Connect and wait for the CONNACK; raise ``ConnectFailed`` unless the broker accepted us."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    result: dict[str, Any] = {}
    where = settings.describe()

    def on_connect(_c: Any, _userdata: Any, _flags: Any, reason_code: Any, properties: Any) -> None:
        result["rc"] = reason_code
        result["max_packet"] = getattr(properties, "MaximumPacketSize", None) if properties is not None else None

    client.on_connect = guarded("on_connect", on_connect)
    props = None
    if session_expiry_s is not None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
    try:
        client.connect(settings.host, settings.port, settings.keepalive_s, clean_start=clean_start, properties=props)
    except (OSError, ValueError) as exc:
        close(client)
        raise _unreachable(exc, settings) from None
    deadline = time.monotonic() + settings.connect_timeout_s
    while "rc" not in result:
        rc = client.loop(timeout=0.05)
        if "rc" in result:
            break  # a refusing broker sends its CONNACK and closes in the same read: the CONNACK counts
        if rc != paho.MQTT_ERR_SUCCESS:
            # TLS 1.3 reports a refused client certificate only by closing after the handshake
            close(client)
            raise ConnectFailed(
                "closed",
                f"the broker at {where} closed the connection before CONNACK ({paho.error_string(rc)})",
                reason="the broker closed the connection before CONNACK",
            )
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            close(client)
            raise ConnectFailed(
                "timeout",
                f"no CONNACK from the broker at {where} within the timeout",
                reason="no CONNACK within the timeout",
            )
    reason = result["rc"]
    if reason.is_failure:
        close(client)
        value = int(reason.value)
        raise ConnectFailed(
            "auth" if value in AUTH_REFUSALS else "connack",
            f"the broker at {where} refused the connection: {reason}",
            reason=f"CONNACK {reason} (0x{value:02x})",
            hint="check the device certificate or username/password and the broker's ACL",
        )
    max_packet = result.get("max_packet")
    return Connack(int(max_packet) if isinstance(max_packet, int) and max_packet > 0 else None)


def _unreachable(exc: BaseException, settings: MqttSettings) -> ConnectFailed:
    """Why ``client.connect`` raised, in the installer's words (never the exception's own text for TLS)."""
    where = f"{settings.host}:{settings.port}"
    hint = "check the URL and that the broker is running"
    if isinstance(exc, socket.gaierror):
        return ConnectFailed("dns", f"cannot reach the broker: cannot resolve {settings.host}", hint=hint)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(
            "refused",
            f"cannot reach the broker at {where}: connection refused",
            reason=f"connection to {where} refused",
            hint=hint,
        )
    if isinstance(exc, ssl.SSLError):
        return ConnectFailed("tls", f"TLS handshake with {where} failed: {exc.reason or exc.__class__.__name__}")
    if isinstance(exc, TimeoutError):
        return ConnectFailed("timeout", f"cannot reach the broker at {where}: no answer", hint=hint)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
    return ConnectFailed("refused", f"cannot reach the broker at {where}: {detail}", hint=hint)


def close(client: Any) -> None:
    """Drop the connection and the client's sockets (no DISCONNECT: the last will is published)."""
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset()


def publish_once(
    settings: MqttSettings,
    topic: str,
    payload: bytes,
    *,
    client_id: str = "",
    retain: bool = False,
    timeout_s: float = 10,
) -> None:
    """Publish one QoS 1 message and wait for its PUBACK (site tools: consent lists, registry)."""
    import paho.mqtt.client as paho

    client = make_client(settings, client_id)
    connect(client, settings)
    acked: dict[int, Any] = {}
    client.on_publish = guarded("on_publish", lambda _c, _u, mid, rc, _p: acked.__setitem__(mid, rc))
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + timeout_s
        while info.mid not in acked:
            if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                raise TransportError(f"no PUBACK for {topic} from {settings.describe()}")
        if acked[info.mid].is_failure:
            raise TransportError(f"the broker refused the publish on {topic}: {acked[info.mid]}")
        client.disconnect()
        client.loop(timeout=0.05)
    finally:
        close(client)


@dataclass
class PublisherStats:
    connects: int = 0
    connect_failures: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0


class MqttPublisher:
    """Drains the outbox to the broker on a background thread; ``start``/``stop``; never blocks emitters."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        site: str,
        device_id: str,
        window: int = 20,
        backoff: Backoff | None = None,
        subscriptions: Iterable[str] = (),
        on_message: MessageCallback | None = None,
        prune_every_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.site = site
        self.device_id = device_id
        self.window = window
        self.backoff = backoff or Backoff()
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.prune_every_s = prune_every_s
        self.availability_topic = topics.availability(site, device_id)
        self.stats = PublisherStats()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._inflight: dict[int, Entry] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Say ``offline`` (retained), disconnect cleanly and end the thread; the outbox keeps the rest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("the MQTT publisher did not stop within %s s", timeout_s)
            self._thread = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def wait_drained(self, timeout_s: float) -> bool:
        """True once every queued event is acknowledged (for tests and an orderly shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0 and not self._inflight:
                return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while not self._stop.is_set():
            client = None
            try:
                client = make_client(self.settings, self.device_id, will=(self.availability_topic, b"offline"))
                connect(client, self.settings, stop=self._stop)
                self.stats.connects += 1
                self.backoff.reset()
                log.info("connected to %s as %s", self.settings.describe(), self.device_id)
                self._session(client)
            except TransportError as exc:
                self.stats.connect_failures += 1
                log.warning("MQTT: %s", exc.one_line())
            except Exception:
                self.stats.connect_failures += 1
                log.exception("MQTT publisher error; reconnecting")
            finally:
                self._connected.clear()
                self._inflight.clear()
                if client is not None:
                    close(client)
            if not self._stop.is_set():
                self._stop.wait(self.backoff.next())

    def _session(self, client: Any) -> None:
        import paho.mqtt.client as paho

        acked: list[int] = []

        def on_publish(_c: Any, _userdata: Any, mid: int, reason_code: Any, _properties: Any) -> None:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                return
            if reason_code.is_failure:
                self.stats.rejected += 1
                self.outbox.reject(entry.id, int(reason_code.value))
            else:
                acked.append(entry.id)

        def on_message(_c: Any, _userdata: Any, message: Any) -> None:
            if self.on_message is not None:
                self.on_message(message.topic, bytes(message.payload), bool(message.retain))

        client.on_publish = guarded("on_publish", on_publish)
        client.on_message = guarded("on_message", on_message)
        client.publish(self.availability_topic, b"online", qos=1, retain=True)
        for topic_filter in self.subscriptions:
            client.subscribe(topic_filter, qos=1)
        self._connected.set()
        last_id = 0
        next_prune = time.monotonic() + self.prune_every_s
        while True:
            if self._stop.is_set():
                self._goodbye(client)
                return
            idle = True
            room = self.window - len(self._inflight)
            if room > 0:
                for entry in self.outbox.pending(after_id=last_id, limit=room):
                    info = client.publish(entry.topic, entry.payload, qos=1, retain=entry.retain)
                    if info.rc != paho.MQTT_ERR_SUCCESS:
                        raise TransportError(f"publish failed: {paho.error_string(info.rc)}")
                    self._inflight[info.mid] = entry
                    last_id = entry.id
                    self.stats.published += 1
                    idle = False
            rc = client.loop(timeout=0.05 if idle else 0.0)
            if rc != paho.MQTT_ERR_SUCCESS:
                raise TransportError(f"connection to {self.settings.describe()} lost ({paho.error_string(rc)})")
            if acked:
                self.outbox.remove(acked)
                self.stats.acked += len(acked)
                acked.clear()
            if time.monotonic() > next_prune:
                self.outbox.prune()
                next_prune = time.monotonic() + self.prune_every_s

    def _goodbye(self, client: Any) -> None:
        """Publish ``offline`` (retained) and disconnect so the broker does not send the last will."""
        import paho.mqtt.client as paho

        done: list[int] = []
        client.on_publish = guarded("on_publish", lambda _c, _u, mid, _rc, _p: done.append(mid))
        info = client.publish(self.availability_topic, b"offline", qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        while info.mid not in done and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                return
        client.disconnect()
        client.loop(timeout=0.05)


def outbox_status(outbox: Outbox) -> Mapping[str, object]:
    """Outbox figures for the health event."""
    return {"outbox_depth": outbox.depth(), "outbox_oldest_s": int(outbox.oldest_age_s())}
