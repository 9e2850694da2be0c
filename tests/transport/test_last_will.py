"""A SIGKILLed agent is announced offline by its last will (retained), and online again on restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.crypto.keys import device_id, write_secret
from edge.state import StateDir
from edge.testing.mosquitto import Mosquitto
from edge.transport import topics
from edge.transport.mqtt import MqttSettings
from tests.transport.mqtt_helpers import Collector

pytestmark = pytest.mark.mosquitto


def test_last_will_marks_a_killed_agent_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    key = SigningKey.generate()
    dev = device_id(key.verify_key)
    state = StateDir(tmp_path / "state")
    state.ensure()
    write_secret(state.identity_key, bytes(key))
    settings = MqttSettings.from_url(mosquitto.url)
    watch = Collector(settings, topics.availability("will", dev))
    argv = [sys.executable, "-m", "edge.transport.loadgen", "--state", str(state.root), "--site", "will",
            "--broker", mosquitto.url, "--total", "100000", "--rate", "5"]  # fmt: skip
    agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert watch.until(lambda: [p for _, p, _ in watch.messages] == [b"online"], 20)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        # No clean DISCONNECT was sent, so the broker publishes the will.
        assert watch.until(lambda: len(watch.messages) >= 2, 10)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        watch.close()
    assert watch.messages[1][1] == b"offline"
    late = Collector(settings, topics.availability("will", dev))  # a late subscriber sees the retained state
    try:
        assert late.until(lambda: late.messages, 5)
        assert late.messages[0][1:] == (b"offline", True)
    finally:
        late.close()
