"""Issue 17 finding 1 over the real broker: a registered device's poison message, and after it.

Device A (its own mTLS certificate, the shipped config and ACL) publishes the issue's 129-byte
COSE_Sign1 with a shared-reference cycle on its own events topic. Before the fix `edge-site
listen` exited 1 on it and, with `--client-id` (a persistent session), got it again at every
restart, so nothing after it was ever verified. Now the listener dead-letters it (reason, topic,
size, digest; never the bytes), acknowledges it and goes on; restarted with the same client id it
does not see it again, and the events queued meanwhile (a deletion receipt among them) verify.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.events.envelope import EventSigner, MemorySeqStore
from edge.site.registry import Registry
from edge.testing.hostile import issue17_cycle_message
from edge.transport import topics
from edge.transport.mqtt import guarded, publish_once
from tests.transport.broker_fixtures import ProductionBroker

pytestmark = pytest.mark.mosquitto


def _listen(
    prod: ProductionBroker, tmp_path: Path, registry: Path, count: int, name: str, *, resumed: bool = False
) -> subprocess.Popen[bytes]:
    log_path = tmp_path / f"{name}.log"
    env = {**os.environ, "EDGE_SITE_MQTT_PASSWORD": prod.passwords["site-verifier"]}
    argv = [
        sys.executable, "-c", "from edge.cli.site import entry; entry()", "listen",
        "--broker", f"mqtts://127.0.0.1:{prod.password_port}", "--ca", str(prod.pki["ca"]),
        "--username", "site-verifier", "--registry", str(registry), "--out", str(tmp_path / "events.jsonl"),
        "--dead-letter", str(tmp_path / "dead.jsonl"), "--client-id", "verifier-poison",
        "--count", str(count), "--timeout", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env)
    if resumed:  # the broker delivers the session's queue right after CONNACK, maybe before SUBACK
        return proc
    deadline = time.monotonic() + 30
    while b"SUBACK" not in log_path.read_bytes():
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "the listener did not subscribe"
        time.sleep(0.05)
    return proc


def test_a_poison_event_is_dead_lettered_once_and_later_events_verify(
    tmp_path: Path, production_broker: ProductionBroker
) -> None:
    prod = production_broker
    a = prod.ids["a"]
    registry = Registry()
    registry.add("hq", prod.keys["a"].verify_key)
    registry.save(tmp_path / "devices.json")
    device = prod.device_settings("a")
    signer = EventSigner(prod.keys["a"], a, MemorySeqStore())
    access = topics.for_event("hq", a, "access")
    receipt_topic = topics.for_event("hq", a, "deletion_receipt")
    poison = issue17_cycle_message()

    first = _listen(prod, tmp_path, tmp_path / "devices.json", 1, "first")
    publish_once(device, access, poison, client_id=a)  # the ACL lets A write its own topic
    body = {"decision": "denied", "modality": "pin", "subject": None, "reason": "bad_pin"}
    publish_once(device, access, signer.sign(access, "access", body), client_id=a)
    assert first.wait(60) == 0, (tmp_path / "first.log").read_text()

    # while the verifier is away, its session queues a deletion receipt and another event
    receipt = {
        "subject": "p-7",
        "deleted": ["face"],
        "records": 3,
        "reason": "withdrawn",
        "consent_version": 4,
        "deleted_at": 1_800_000_000,
    }
    publish_once(device, receipt_topic, signer.sign(receipt_topic, "deletion_receipt", receipt), client_id=a)
    publish_once(device, access, signer.sign(access, "access", body), client_id=a)

    second = _listen(prod, tmp_path, tmp_path / "devices.json", 2, "second", resumed=True)
    assert second.wait(60) == 0, (tmp_path / "second.log").read_text()

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["seq"]) for e in events] == [("access", 1), ("deletion_receipt", 2), ("access", 3)]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == 1  # once: not redelivered after the restart
    assert dead[0]["topic"] == access
    assert dead[0]["reason"] == "bad_signature"
    assert dead[0]["size"] == 129
    assert dead[0]["sha256"] == hashlib.sha256(poison).hexdigest()
    assert "tag 28" in dead[0]["detail"]
    written = (tmp_path / "dead.jsonl").read_bytes() + (tmp_path / "first.log").read_bytes()
    assert poison not in written
    assert b"application/gate-edge-consent" not in written


def test_a_raising_handler_is_logged_and_the_loop_keeps_delivering(
    production_broker: ProductionBroker, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.transport.mqtt_helpers import Collector

    prod = production_broker
    reader = Collector(prod.password_settings("site-verifier"), "sites/+/gates/+/events/#")
    got: list[bytes] = []

    def handler(_c: object, _u: object, message: object) -> None:
        payload = bytes(message.payload)  # type: ignore[attr-defined]
        if payload == b"boom":
            raise RuntimeError("handler failed on payload boom")
        got.append(payload)

    reader.client.on_message = guarded("on_message", handler)
    a = prod.ids["a"]
    topic = topics.for_event("hq", a, "health")
    try:
        with caplog.at_level(logging.ERROR, logger="edge.transport.mqtt"):
            for payload in (b"one", b"boom", b"two"):
                publish_once(prod.device_settings("a"), topic, payload, client_id=a)
            assert reader.until(lambda: len(got) == 2, 10)  # loop() never raised, and kept delivering
    finally:
        reader.close()
    assert got == [b"one", b"two"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [errors[0]]
    assert "on_message handler raised RuntimeError at test_poison_messages.py" in errors[0]
    assert "boom" not in errors[0]  # the exception's message (which may quote data) is not logged
