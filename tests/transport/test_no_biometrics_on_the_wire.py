"""Every byte the device sends to the broker is captured; no image, embedding or template is in it.

The test emits one legitimate event of every kind, then tries to smuggle a face image (JPEG), a face
embedding (float32) and a fingerprint template through every field of every kind. All attempts must
be refused and audited; the captured TCP stream is then scanned for the artefacts in raw, hex and
base64 form, and every published payload is walked to check it holds no byte string or number list
beyond the envelope's own (kid, cti, signature).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import cbor2
import cv2
import numpy as np
import pytest
from nacl.signing import SigningKey

from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner
from edge.events.guard import EgressRefused
from edge.events.outbox_sink import OutboxSink
from edge.events.schema import EVENT_KINDS
from edge.testing.mosquitto import Mosquitto
from edge.transport import topics
from edge.transport.mqtt import Backoff, MqttPublisher, MqttSettings
from edge.transport.outbox import Outbox
from tests.transport.mqtt_helpers import Collector, RecordingProxy

pytestmark = pytest.mark.mosquitto

GOOD: dict[str, dict[str, object]] = {
    "access": {"decision": "granted", "modality": "face", "subject": "p-0042", "reason": "match", "latency_ms": 180},
    "enrolment": {"subject": "p-0042", "modality": "fingerprint", "result": "enrolled", "consent_version": 3},
    "deletion_receipt": {
        "subject": "p-0042",
        "deleted": ["face", "fingerprint"],
        "records": 4,
        "reason": "withdrawn",
        "consent_version": 4,
        "deleted_at": 1_700_000_000,
    },
    "consent_applied": {"version": 4, "entries": 5, "digest": "0f" * 32},
    "consent_rejected": {"version": 5, "reason": "bad_signature"},
    "tamper": {"source": "case_open", "state": "raised"},
    "alarm": {"code": "camera_failed", "severity": "warning", "component": "camera"},
    "health": {"uptime_s": 60, "outbox_depth": 0, "cpu_temp_c": 47.25, "load1": 0.5, "modalities": ["face"]},
}


class ListAudit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, object]]] = []

    def append(self, kind: str, details: Mapping[str, object]) -> None:
        self.records.append((kind, dict(details)))


def artefacts() -> dict[str, bytes]:
    rng = np.random.default_rng(2024)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    embedding = rng.standard_normal(128).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    template = bytes([0x03, 0x03, 0x5C, 0x12]) + rng.integers(0, 255, 508, dtype=np.uint8).tobytes()
    return {
        "jpeg": jpeg.tobytes(),
        "embedding_f32": embedding.tobytes(),
        "embedding_f64": embedding.astype(np.float64).tobytes(),
        "embedding_f32_be": embedding.astype(">f4").tobytes(),
        "template": template,
    }


def smuggling_values(art: dict[str, bytes]) -> list[object]:
    emb = np.frombuffer(art["embedding_f32"], dtype=np.float32)
    return [
        art["jpeg"],
        bytearray(art["template"]),
        memoryview(art["embedding_f32"]),
        emb,
        emb.tolist(),
        [float(x) for x in emb[:8]],
        base64.b64encode(art["jpeg"]).decode(),
        art["template"].hex(),
        {"template": art["template"].hex()},
        [art["template"][:32].hex()],
    ]


def windows(blob: bytes, size: int = 16) -> set[bytes]:
    return {blob[i : i + size] for i in range(0, len(blob) - size + 1, 4)}


def walk(value: object, path: str, found: list[str]) -> None:
    if isinstance(value, bytes):
        found.append(f"bytes at {path}")
    elif isinstance(value, dict):
        for k, v in value.items():
            walk(v, f"{path}.{k}", found)
    elif isinstance(value, list):
        if any(not isinstance(v, str) for v in value):
            found.append(f"non-name list at {path}")
    elif isinstance(value, str) and len(value) > 64:
        found.append(f"long text at {path}")


def test_nothing_biometric_leaves_the_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    art = artefacts()
    key = SigningKey.generate()
    dev = device_id(key.verify_key)
    audit = ListAudit()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sink = OutboxSink(EventSigner(key, dev, outbox, audit=audit), outbox, "hq", audit=audit)

    attempts = 0
    for kind, fields in EVENT_KINDS.items():
        for field in [*fields, "image", "embedding", "template"]:
            for value in smuggling_values(art):
                attempts += 1
                with pytest.raises(EgressRefused):
                    sink.publish(kind, {**GOOD[kind], field: value})
    assert len(audit.records) == attempts
    assert all(kind == "egress_refused" for kind, _ in audit.records)
    assert outbox.depth() == 0  # nothing refused was queued, no sequence number used
    for kind, body in GOOD.items():
        sink.publish(kind, body)

    proxy = RecordingProxy(mosquitto.port)
    collector = Collector(MqttSettings.from_url(mosquitto.url), topics.events_filter("hq"))
    publisher = MqttPublisher(
        MqttSettings.from_url(f"mqtt://127.0.0.1:{proxy.port}"),
        outbox,
        site="hq",
        device_id=dev,
        backoff=Backoff(0.05, 0.3),
    )
    try:
        publisher.start()
        assert collector.until(lambda: len(collector.messages) >= len(GOOD), 20)
        assert publisher.wait_drained(10)
    finally:
        publisher.stop()
        collector.close()
        proxy.close()
        outbox.close()

    wire = bytes(proxy.sent)
    assert len(wire) > 1000  # the capture did see the traffic
    for name, blob in art.items():
        for window in windows(blob):
            assert window not in wire, f"a 16-byte piece of the {name} is on the wire"
        assert blob.hex()[:32].encode() not in wire
        assert base64.b64encode(blob)[:24] not in wire
    assert b"\xff\xd8\xff" not in wire  # no JPEG start-of-image marker anywhere
    assert b"\x89PNG" not in wire

    # Structure: only the envelope's own byte strings, nothing else binary, no number lists.
    assert [topic.rsplit("/", 1)[1] for topic, _, _ in collector.messages] == list(GOOD)
    for _, payload, _ in collector.messages:
        protected, unprotected, inner, signature = cbor2.loads(payload).value
        assert cbor2.loads(protected).keys() == {1, 4}
        assert unprotected == {}
        assert len(signature) == 64
        claims = cbor2.loads(inner)
        assert isinstance(claims.pop(7), bytes)  # cti
        found: list[str] = []
        walk(claims, "payload", found)
        assert found == []
