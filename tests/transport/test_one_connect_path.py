"""One way to a broker: the agent's ``connect``, the consent list tools and the installer's probe say
the same thing about the same failure, and the consent topics come from one validated builder.

Tried against the tree before: the consent tools and the probe each configured their own paho
client, so a refused password was ``problem = "auth"`` in the probe but a bare ``TransportError``
("the broker refused the connection") in ``publish_list``; and ``distribution.consent_topic`` /
``chunks.chunk_topic`` accepted any site text, so a device could subscribe to ``sites/a/+/consent``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.consent.chunks import Reassembler, chunk_topic, chunks_filter
from edge.consent.distribution import Broker, fetch_retained_list, publish_list
from edge.errors import TransportError
from edge.testing.mosquitto import Mosquitto, free_port
from edge.transport import topics
from edge.transport.mqtt import ConnectFailed, MqttSettings, close, connect, make_client
from provisioning.mqttprobe import probe_broker

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto that knows one user, ``gate`` / ``correct-horse`` (``user root``: started as root it
    would drop to a user that cannot read pytest's 0700 temp dirs)."""
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gate", "correct-horse"], check=True)
    broker = Mosquitto(tmp_path / "broker", extra=f"user root\npassword_file {passwords}", anonymous=False)
    broker.start()
    yield broker
    broker.stop()


def agent_problem(url: str, username: str | None, password: str | None) -> str:
    settings = MqttSettings.from_url(url, username=username, password=password, connect_timeout_s=5.0)
    client = make_client(settings, "one-path-agent")
    try:
        connect(client, settings)
    except ConnectFailed as exc:
        return exc.problem
    close(client)
    return "connected"


def tool_problem(url: str, username: str | None, password: str | None) -> str:
    try:
        fetch_retained_list(Broker(url, username=username, password=password), "hq", timeout_s=5.0)
    except ConnectFailed as exc:
        return exc.problem
    return "connected"


def probe_problem(url: str, username: str, password: str) -> str:
    result = probe_broker(
        url, client_id="one-path-probe", topic="sites/hq/gates/gw-1/selftest", username=username, password=password
    )
    return "connected" if result.ok else result.problem


def test_a_wrong_password_is_auth_on_every_path(password_broker: Mosquitto) -> None:
    url = password_broker.url
    wrong = {"agent": agent_problem, "consent tools": tool_problem, "installer probe": probe_problem}
    assert {name: fn(url, "gate", "wrong") for name, fn in wrong.items()} == dict.fromkeys(wrong, "auth")
    assert agent_problem(url, "gate", "correct-horse") == "connected"
    assert tool_problem(url, "gate", "correct-horse") == "connected"


def test_nothing_listening_is_refused_on_every_path(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    assert agent_problem(url, None, None) == "refused"
    assert tool_problem(url, None, None) == "refused"
    assert probe_problem(url, "", "") == "refused"
    with pytest.raises(ConnectFailed, match="connection refused") as caught:
        publish_list(Broker(url), "hq", b"\xa0")
    assert caught.value.hint  # the installer is told what to check


def test_consent_topics_are_built_once_and_validated() -> None:
    assert topics.consent_subscriptions("hq") == ["sites/hq/consent", "sites/hq/consent/chunks/+"]
    assert chunks_filter("hq") == topics.consent_subscriptions("hq")[1]
    assert chunk_topic("hq", bytes(32)) == "sites/hq/consent/chunks/" + "00" * 32
    for bad in ("a/+", "#", "", "a/b", "$SYS"):
        with pytest.raises(TransportError, match="cannot be a topic level"):
            topics.consent_subscriptions(bad)
        with pytest.raises(TransportError):
            Reassembler(bad, None)  # the device's receiver refuses a site it could not subscribe to
        with pytest.raises(TransportError):
            publish_list(Broker("mqtt://127.0.0.1:1"), bad, b"\xa0")  # refused before any connection
