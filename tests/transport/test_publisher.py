"""The publisher against a real Mosquitto: order, verification, availability, outages absorbed."""

from __future__ import annotations

import time
from pathlib import Path

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner, decode_payload
from edge.events.kinds import Access, Health
from edge.events.outbox_sink import OutboxSink
from edge.modality import Modality
from edge.site.registry import Registry
from edge.site.verifier import Verifier
from edge.testing.mosquitto import Mosquitto, closed_port
from edge.transport import topics
from edge.transport.mqtt import Backoff, MqttPublisher, MqttSettings
from edge.transport.outbox import Outbox
from tests.pycose_reference import pycose_payload
from tests.transport.mqtt_helpers import Collector

pytestmark = pytest.mark.mosquitto


class Device:
    def __init__(self, tmp_path: Path, site: str = "hq") -> None:
        self.key = SigningKey.generate()
        self.id = device_id(self.key.verify_key)
        self.site = site
        self.outbox = Outbox(tmp_path / f"{self.id}.sqlite3")
        self.sink = OutboxSink(EventSigner(self.key, self.id, self.outbox), self.outbox, site)

    def publisher(self, settings: MqttSettings) -> MqttPublisher:
        return MqttPublisher(settings, self.outbox, site=self.site, device_id=self.id, backoff=Backoff(0.05, 0.3))


def test_events_arrive_in_order_and_verify_with_pycose_and_the_verifier(tmp_path: Path, mosquitto: Mosquitto) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    dev = Device(tmp_path)
    collector = Collector(settings, topics.events_filter("hq"))
    publisher = dev.publisher(settings)
    try:
        publisher.start()
        for i in range(30):
            dev.sink.emit(Access("granted", Modality.face, f"p-{i}", "match"))
        dev.sink.emit(Health(uptime_s=5, outbox_depth=0, cpu_temp_c=48.0))
        assert collector.until(lambda: len(collector.messages) >= 31, 20)
        assert publisher.wait_drained(10)
    finally:
        publisher.stop()
        collector.close()
    registry = Registry()
    registry.add("hq", dev.key.verify_key)
    verifier = Verifier(registry)
    seqs = []
    for topic, payload, _ in collector.messages:
        claims = decode_payload(pycose_payload(payload, bytes(dev.key.verify_key), topic.encode()))
        assert verifier.verify(topic, payload).seq == claims.seq
        seqs.append(claims.seq)
    assert seqs == list(range(1, 32))
    assert collector.messages[-1][0] == f"sites/hq/gates/{dev.id}/events/health"
    dev.outbox.close()


def test_availability_is_retained_online_then_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    dev = Device(tmp_path)
    publisher = dev.publisher(settings)
    publisher.start()
    assert publisher.wait_connected(10)
    online = Collector(settings, topics.availability("hq", dev.id))
    try:
        assert online.until(lambda: online.messages, 5)
        assert online.messages[0][1:] == (b"online", True)  # retained
    finally:
        online.close()
    publisher.stop()
    offline = Collector(settings, topics.availability("hq", dev.id))
    try:
        assert offline.until(lambda: offline.messages, 5)
        assert offline.messages[0][1:] == (b"offline", True)
    finally:
        offline.close()
    dev.outbox.close()


def test_emit_never_waits_for_an_absent_broker_and_the_outbox_replays_after_restart(tmp_path: Path) -> None:
    dev = Device(tmp_path)
    with closed_port() as port:  # held: no broker of a suite running beside this one can appear there
        settings = MqttSettings.from_url(f"mqtt://127.0.0.1:{port}", connect_timeout_s=1.0)
        publisher = dev.publisher(settings)
        publisher.start()
        try:
            for i in range(50):  # nothing listens on the port: emit only writes SQLite
                dev.sink.emit(Health(uptime_s=i, outbox_depth=i))
            assert dev.outbox.depth() == 50
            assert not publisher.connected
            # the publisher's thread tries on its own time: wait for the failure this asserts
            deadline = time.monotonic() + 20
            while publisher.stats.connect_failures < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert publisher.stats.connect_failures >= 1
            assert not publisher.connected
        finally:
            publisher.stop()
    dev.outbox.close()
    # "Restart": a new outbox object on the same file, a broker on the port, a new publisher.
    dev.outbox = Outbox(tmp_path / f"{dev.id}.sqlite3")
    with Mosquitto(tmp_path / "broker", port=port) as broker:
        collector = Collector(MqttSettings.from_url(broker.url), topics.events_filter())
        publisher = dev.publisher(settings)
        try:
            publisher.start()
            assert collector.until(lambda: len(collector.messages) >= 50, 20)
            assert publisher.wait_drained(10)
        finally:
            publisher.stop()
            collector.close()
    seqs = [decode_payload(cbor2.loads(p).value[2]).seq for _, p, _ in collector.messages]
    assert seqs == list(range(1, 51))
    dev.outbox.close()


def test_a_retained_row_reaches_a_subscriber_that_connects_later_and_an_empty_one_clears_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Template parcels travel retained, so a gate that was offline finds them when it connects;
    a parcel no longer owed is cleared with an empty retained message. Events stay unretained."""
    settings = MqttSettings.from_url(mosquitto.url)
    dev = Device(tmp_path)
    topic = f"sites/hq/sync/{dev.id}/{dev.id}/" + "ab" * 16
    publisher = dev.publisher(settings)
    try:
        publisher.start()
        dev.outbox.put(topic, b"sealed parcel bytes", retain=True)
        dev.sink.emit(Health(uptime_s=5, outbox_depth=0))
        assert publisher.wait_drained(10)
        late = Collector(settings, "sites/hq/#")  # subscribes after both were published
        try:
            assert late.until(lambda: any(t == topic for t, _, _ in late.messages), 5)
            assert (topic, b"sealed parcel bytes", True) in late.messages
            assert not any(t.endswith("/health") for t, _, _ in late.messages)  # not retained
        finally:
            late.close()
        dev.outbox.put(topic, b"", retain=True)
        assert publisher.wait_drained(10)
        again = Collector(settings, "sites/hq/sync/#")
        try:
            again.until(lambda: False, 0.5)  # give the broker time to deliver anything retained
            assert again.messages == []
        finally:
            again.close()
    finally:
        publisher.stop()
        dev.outbox.close()


def test_an_outbox_written_before_retained_rows_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, created REAL NOT NULL);"
        "INSERT INTO outbox (seq, topic, payload, created) VALUES (7, 't', x'01', 1.0);"
    )
    db.commit()
    db.close()
    outbox = Outbox(path)
    try:
        (row,) = outbox.pending()
        assert (row.seq, row.topic, row.payload, row.retain) == (7, "t", b"\x01", False)
    finally:
        outbox.close()
