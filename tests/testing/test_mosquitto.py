"""The test broker is a real Mosquitto: clients connect, publish and receive through it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.errors import TransportError
from edge.testing.mosquitto import Mosquitto


def test_session_broker_accepts_connections(mosquitto: Mosquitto) -> None:
    with socket.create_connection(("127.0.0.1", mosquitto.port), timeout=2) as sock:
        # MQTT 3.1.1 CONNECT, clean session, keepalive 10, client id "t"
        sock.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 1]) + b"t")
        assert sock.recv(4) == bytes([0x20, 2, 0, 0])  # CONNACK, accepted


def test_kill_and_restart_on_the_same_port(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    port = broker.port
    broker.stop(kill=True)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    broker.start()
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    broker.stop()


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, extra="this_is_not_an_option 1")
    with pytest.raises(TransportError, match="exited at start"):
        broker.start()
