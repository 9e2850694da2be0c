"""The durable outbox: committed before publish, ordered, persisted sequence, stated bounds and alarms."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.events.kinds import Alarm
from edge.transport.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_rows_survive_reopening_and_the_sequence_continues(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    seqs = [box.append("t/a", lambda seq: f"payload-{seq}".encode()) for _ in range(3)]
    assert seqs == [1, 2, 3]
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert [(e.seq, e.payload) for e in box.pending()] == [(1, b"payload-1"), (2, b"payload-2"), (3, b"payload-3")]
    assert box.append("t/a", lambda seq: b"x") == 4
    assert box.next_seq() == 5
    assert box.last_seq() == 5
    # WAL mode, full sync: what the power-loss promise rests on.
    db = sqlite3.connect(tmp_path / "o.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    box.close()


def test_pending_is_in_order_and_removal_is_by_acknowledged_id(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    for _ in range(5):
        box.append("t", lambda seq: bytes([seq]))
    first = box.pending(limit=2)
    assert [e.seq for e in first] == [1, 2]
    assert [e.seq for e in box.pending(after_id=first[-1].id, limit=10)] == [3, 4, 5]
    box.remove([first[1].id])  # PUBACKs can arrive out of order
    assert [e.seq for e in box.pending()] == [1, 3, 4, 5]
    assert box.depth() == 4
    box.close()


def test_a_failed_build_uses_no_sequence_number_and_queues_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")

    def boom(seq: int) -> bytes:
        raise RuntimeError("signer failed")

    with pytest.raises(RuntimeError):
        box.append("t", boom)
    assert box.depth() == 0
    assert box.append("t", lambda seq: b"ok") == 1
    box.close()


def test_size_bound_warns_first_then_drops_oldest_and_names_the_range(tmp_path: Path) -> None:
    alarms: list[tuple[str, dict[str, object]]] = []

    def on_alarm(alarm: Alarm) -> None:
        body = alarm.body()
        assert body.pop("component") == "outbox"
        alarms.append((str(body.pop("code")), body))

    box = Outbox(tmp_path / "o.sqlite3", max_events=10, on_alarm=on_alarm)
    for _ in range(7):
        box.append("t", lambda seq: b"e")
    assert alarms == []
    box.append("t", lambda seq: b"e")  # 8 of 10: the warning comes before anything is lost
    assert alarms == [("outbox_high", {"severity": "warning", "state": "raised", "count": 8})]
    for _ in range(4):
        box.append("t", lambda seq: b"e")
    dropped = [d for c, d in alarms if c == "outbox_dropped"]
    assert dropped == [
        {"severity": "critical", "count": 1, "first_seq": 1, "last_seq": 1},
        {"severity": "critical", "count": 1, "first_seq": 2, "last_seq": 2},
    ]
    assert [e.seq for e in box.pending(limit=100)] == list(range(3, 13))
    # Draining below half the bound clears the warning.
    box.remove([e.id for e in box.pending(limit=7)])
    assert alarms[-1] == ("outbox_high", {"severity": "info", "state": "cleared", "count": 3})
    box.close()


def test_age_bound_warns_then_drops_events_older_than_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    alarms: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", max_age_s=100.0, clock=clock, on_alarm=lambda alarm: alarms.append(alarm.code))
    box.append("t", lambda seq: b"old")
    clock.now += 85
    box.append("t", lambda seq: b"newer")
    assert alarms == ["outbox_high"]  # the oldest is at 85% of the age bound
    clock.now += 20
    assert box.prune() == 1
    assert alarms[-2:] == ["outbox_dropped", "outbox_high"]  # dropped, then the warning cleared
    assert [e.payload for e in box.pending()] == [b"newer"]
    box.close()


def test_a_broker_refusal_moves_the_row_aside_and_alarms(tmp_path: Path) -> None:
    alarms: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", on_alarm=lambda alarm: alarms.append(alarm.code))
    box.append("t", lambda seq: b"a")
    row = box.pending()[0]
    box.reject(row.id, 0x87)
    assert box.depth() == 0
    assert box.rejected_count() == 1
    assert alarms == ["outbox_rejected"]
    box.close()


def test_an_unwritable_location_is_a_clear_storage_error(tmp_path: Path) -> None:
    from edge.errors import StorageError

    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="cannot open the outbox"):
        Outbox(tmp_path / "file" / "o.sqlite3")


def test_outbox_alarms_become_signed_alarm_events_through_the_sink(tmp_path: Path) -> None:
    import cbor2
    from nacl.signing import SigningKey

    from edge.crypto.keys import device_id
    from edge.events.envelope import EventSigner, decode_payload
    from edge.events.kinds import Health
    from edge.events.outbox_sink import OutboxSink

    key = SigningKey.generate()
    box = Outbox(tmp_path / "o.sqlite3", max_events=10)
    sink = OutboxSink(EventSigner(key, device_id(key.verify_key), box), box, "hq")
    for i in range(8):
        sink.emit(Health(uptime_s=i, outbox_depth=i))
    kinds = [decode_payload(cbor2.loads(e.payload).value[2]) for e in box.pending(limit=20)]
    assert [c.kind for c in kinds] == ["health"] * 8 + ["alarm"]
    assert kinds[-1].body == {
        "code": "outbox_high",
        "component": "outbox",
        "severity": "warning",
        "state": "raised",
        "count": 8,
    }
    assert [c.seq for c in kinds] == list(range(1, 10))
    box.close()


def test_the_mqtt_password_is_not_in_the_settings_repr() -> None:
    from edge.transport.mqtt import MqttSettings

    settings = MqttSettings.from_url("mqtts://broker:8884", username="site-verifier", password="hunter2-secret")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.describe()


def test_settings_come_from_the_agent_config_mqtt_section(tmp_path: Path) -> None:
    from edge.config.schema import MqttSection
    from edge.errors import TransportError
    from edge.transport.mqtt import MqttSettings

    section = MqttSection(
        url="mqtts://broker.example:8883", username="gw-1", password="pw", ca_file=tmp_path / "ca.pem"
    )
    settings = MqttSettings.from_section(section)
    assert (settings.host, settings.port, settings.tls, settings.username, settings.password) == (
        "broker.example",
        8883,
        True,
        "gw-1",
        "pw",
    )
    assert settings.ca_file == tmp_path / "ca.pem"
    assert MqttSettings.from_url("mqtt://10.0.0.5").port == 1883
    with pytest.raises(TransportError, match="not mqtt://"):
        MqttSettings.from_url("http://broker:80")
