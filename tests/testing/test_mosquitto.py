"""The test broker is a real Mosquitto: clients connect, publish and receive through it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.errors import TransportError
from edge.testing.mosquitto import Mosquitto, closed_port


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


def test_a_picked_port_taken_before_the_broker_binds_it_is_replaced(tmp_path: Path) -> None:
    # another process listens on the port this broker picked (a broker of a suite running beside
    # this one took it between free_port() and the bind): the broker must not take that process's
    # answers for its own, and moves to another port
    broker = Mosquitto(tmp_path)
    taken = broker.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        broker.start()
        try:
            assert broker.port != taken
            test_session_broker_accepts_connections(broker)  # a real Mosquitto answers on the new port
        finally:
            broker.stop()


def test_a_given_port_that_is_taken_is_an_error_not_another_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = Mosquitto(tmp_path, port=port)
        with pytest.raises(TransportError, match="exited at start"):
            broker.start()
        assert broker.port == port


def test_closed_port_refuses_connections_and_cannot_be_listened_on(tmp_path: Path) -> None:
    with closed_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # nothing else can listen there meanwhile, not even with SO_REUSEADDR as Mosquitto sets it
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="in use"):
                other.bind(("127.0.0.1", port))
        with pytest.raises(TransportError, match="exited at start"):
            Mosquitto(tmp_path, port=port).start()
