"""Test helpers: a subscriber that collects messages, and a TCP proxy that records every byte."""

from __future__ import annotations

import secrets
import select
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from edge.transport.mqtt import MqttSettings, close, connect, make_client


class Collector:
    """Subscribes (and waits for the SUBACK) on construction; ``until`` drives the loop."""

    def __init__(self, settings: MqttSettings, topic_filter: str, *, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = make_client(settings, client_id or f"collector-{secrets.token_hex(3)}")
        connect(self.client, settings)
        subscribed: list[int] = []
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: subscribed.append(mid)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        _, mid = self.client.subscribe(topic_filter, qos=1)
        self.until(lambda: mid in subscribed, 5)

    def until(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            assert self.client.loop(timeout=0.05) == paho.MQTT_ERR_SUCCESS
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.05)
        close(self.client)


class RecordingProxy:
    """Forwards 127.0.0.1:port to the broker and records every byte the clients send."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()  # client -> broker
        self.received = bytearray()  # broker -> client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recording-proxy")
        self._thread.start()

    def _run(self) -> None:
        peers: dict[socket.socket, tuple[socket.socket, bytearray]] = {}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([self.listener, *peers], [], [], 0.05)
                for sock in readable:
                    if sock is self.listener:
                        client, _ = self.listener.accept()
                        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                        peers[client] = (upstream, self.sent)
                        peers[upstream] = (client, self.received)
                        continue
                    if sock not in peers:
                        continue
                    other, record = peers[sock]
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        for s in (sock, other):
                            peers.pop(s, None)
                            s.close()
                        continue
                    record.extend(data)
                    other.sendall(data)
        finally:
            for sock in peers:
                sock.close()
            self.listener.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
