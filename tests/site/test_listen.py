"""``edge-site listen``: shared subscriptions split the load; JSON lines out; bad events rejected."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.cli.site import main as site_main
from edge.cli.site_listen import Listener
from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner
from edge.events.kinds import Access
from edge.events.outbox_sink import OutboxSink
from edge.modality import Modality
from edge.site.registry import Registry
from edge.site.verifier import Verifier
from edge.testing.mosquitto import Mosquitto
from edge.transport import topics
from edge.transport.mqtt import Backoff, MqttPublisher, MqttSettings, publish_once
from edge.transport.outbox import Outbox

pytestmark = pytest.mark.mosquitto
N = 60


def test_two_listeners_in_one_share_group_split_the_events_exactly_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    key = SigningKey.generate()
    dev = device_id(key.verify_key)
    registry = Registry()
    registry.add("split", key.verify_key)
    settings = MqttSettings.from_url(mosquitto.url)
    outs = [io.StringIO(), io.StringIO()]
    # Each instance has its own verifier state, as separate processes would.
    listeners = [
        Listener(settings, Verifier(registry), out, None, share="verifiers", site="split", client_id=None)
        for out in outs
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=lst.run, kwargs={"count": None, "timeout_s": 60, "stop": stop}, name=f"listen-{i}")
        for i, lst in enumerate(listeners)
    ]
    outbox = Outbox(tmp_path / "o.sqlite3")
    sink = OutboxSink(EventSigner(key, dev, outbox), outbox, "split")
    publisher = MqttPublisher(settings, outbox, site="split", device_id=dev, backoff=Backoff(0.05, 0.3))
    try:
        for t in threads:
            t.start()
        assert all(lst.subscribed.wait(10) for lst in listeners)
        publisher.start()
        for i in range(N):
            sink.emit(Access("denied", Modality.pin, None, f"bad_pin_{i % 3}"))
        assert publisher.wait_drained(20)
        deadline = threading.Event()
        for _ in range(200):
            if sum(lst.accepted for lst in listeners) >= N:
                break
            deadline.wait(0.05)
    finally:
        stop.set()
        publisher.stop()
        for t in threads:
            t.join(10)
        outbox.close()
    seqs = [[json.loads(line)["seq"] for line in out.getvalue().splitlines()] for out in outs]
    assert sorted(seqs[0] + seqs[1]) == list(range(1, N + 1))  # every event once, across the group
    assert seqs[0]
    assert seqs[1]
    assert all(s == sorted(s) for s in seqs)


def test_the_cli_writes_json_lines_and_rejects_a_forged_event(tmp_path: Path, mosquitto: Mosquitto) -> None:
    key = SigningKey.generate()
    dev = device_id(key.verify_key)
    registry = Registry()
    registry.add("cli", key.verify_key)
    registry.save(tmp_path / "registry.json")
    settings = MqttSettings.from_url(mosquitto.url)
    topic = topics.for_event("cli", dev, "tamper")
    signer = EventSigner(key, dev, Outbox(tmp_path / "o.sqlite3"))
    genuine = signer.sign(topic, "tamper", {"source": "case_open", "state": "raised"})
    forged = bytearray(genuine)
    forged[-1] ^= 1
    other = topics.for_event("cli", dev, "health")  # a genuine tamper event moved to another topic

    def publish_later() -> None:
        for t, payload in ((topic, bytes(forged)), (other, genuine), (topic, genuine), (topic, genuine)):
            publish_once(settings, t, payload)

    timer = threading.Timer(1.0, publish_later)
    timer.start()
    try:
        rc = site_main([
            "listen", "--broker", mosquitto.url, "--registry", str(tmp_path / "registry.json"),
            "--out", str(tmp_path / "out.jsonl"), "--rejects", str(tmp_path / "rejects.jsonl"),
            "--site", "cli", "--count", "1", "--timeout", "20",
        ])  # fmt: skip
    finally:
        timer.join(20)
        signer.seq_store.close()  # type: ignore[attr-defined]
    assert rc == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["device"] == dev
    assert record["body"] == {"source": "case_open", "state": "raised"}
    assert record["seq"] == cbor2.loads(cbor2.loads(genuine).value[2])["seq"]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reasons[:2] == ["bad_signature", "bad_signature"]  # forged bytes; right bytes on the wrong topic


def test_listen_without_a_registry_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = site_main(["listen", "--broker", "mqtt://127.0.0.1:1", "--registry", str(tmp_path / "none.json")])
    assert rc == 1
    assert "device registry" in capsys.readouterr().err
