"""Every byte the broker carries during `edge demo --gates 2` is captured: no face embedding, no
sensor template and no image is on the wire in clear; the templates travel only sealed.

The two-gate demo runs in this process on its own Mosquitto (real models, LFW-dev photos, FVC-dev
fingers, two R503 simulators, the agent of `edge run` at each gate, `edge-site listen` verifying
every event) while a subscriber on `#` records every message. Afterwards every template parcel
seen is opened with its recipient's private sync key (which proves it was sealed to that key, and
gives back exactly the vectors and sensor template that travelled); the capture is then searched
for those plaintexts in every encoding tried, and for the photos the cameras saw.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from nacl.public import PrivateKey
from nacl.signing import VerifyKey

from edge.crypto.keys import load_box_key
from edge.site.registry import Registry
from edge.state import StateDir
from edge.sync.parcel import ParcelError, open_parcel
from edge.testing.mosquitto import Mosquitto

for _module in ("edge.gallery.store", "edge.vision.pipeline", "edge.fingerprint.sim.process"):
    pytest.importorskip(_module, reason=f"{_module} is not in this build")

pytestmark = [pytest.mark.mosquitto, pytest.mark.needs_data, pytest.mark.needs_models]

PARCEL = re.compile(r"^sites/([^/]+)/sync/(gw-[0-9a-f]{16})/(gw-[0-9a-f]{16})/[0-9a-f]{32}$")
#: what may be published: the consent list (and its chunks), signed events, parcels, availability,
#: the installer's broker live test (`edge-provision broker`)
ALLOWED_TOPIC = re.compile(
    r"^sites/[^/]+/(consent(/.*)?|gates/gw-[0-9a-f]{16}/(events/[a-z_]+|availability|selftest)|sync/gw-[0-9a-f]{16}/gw-[0-9a-f]{16}/[0-9a-f]{32})$"
)


class Capture:
    """A subscriber on `#` (QoS 1): every message the broker carried, in arrival order."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="capture-all", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()
        assert self.ready.wait(10), "the capture never subscribed"

    def _on(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def windows(blob: bytes, size: int, step: int = 1) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob) - size + 1, step)]


def float_forms(vector: np.ndarray) -> list[bytes]:
    """8-byte pieces of a vector in every binary encoding tried: two float32 values (either byte
    order), one float64 (either order), four float16 values; at every value offset."""
    pieces: list[bytes] = []
    for dtype, per in (("<f4", 2), (">f4", 2), ("<f8", 1), (">f8", 1), ("<f2", 4)):
        raw = np.asarray(vector, dtype=dtype).tobytes()
        width = np.dtype(dtype).itemsize
        pieces += windows(raw, width * per, width)
    return pieces


def busy(piece: bytes) -> bool:
    """A piece of a photo worth searching for: not a flat run (a black border matches any zeros)."""
    return len(set(piece)) >= 8


def test_nothing_biometric_is_on_the_wire_of_a_two_gate_site(
    tmp_path: Path, lfw_dev: Path, fvc_dev: Path, models_dir: Path
) -> None:
    from edge.demo.fleet import FleetDemo
    from edge.demo.run import Options

    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    capture = Capture(broker.port)
    out = io.StringIO()
    work = tmp_path / "demo"
    try:
        opts = Options(
            datasets=lfw_dev.parent, broker_url=broker.url, workdir=work, models_dir=models_dir, out=out, gates=2
        )
        opts.step_timeout_s = 60.0
        code = FleetDemo(opts).run()
    finally:
        capture.close()
        broker.stop()
    log = out.getvalue()
    assert code == 0, log[-4000:]
    assert "demo PASSED" in log

    # -- every topic is one the product publishes on; every parcel opens only with its recipient's key
    messages = capture.messages
    assert [t for t, _ in messages if not ALLOWED_TOPIC.match(t)] == []
    assert {p for t, p in messages if t.endswith("/availability")} <= {b"online", b"offline", b""}
    registry = Registry.load(work / "registry.json")
    senders = {d.device_id: VerifyKey(bytes(d.public_key)) for d in registry.devices.values()}
    boxes: dict[str, PrivateKey] = {}
    for root in sorted(work.glob("gate-*")):
        if root.is_dir():
            state = StateDir(root)
            key = load_box_key(state.sync_key)
            boxes[next(d for d, dev in registry.devices.items() if dev.box_key == key.public_key)] = key
    assert len(boxes) == 2
    vectors: list[np.ndarray] = []
    templates: list[bytes] = []
    for topic, payload in messages:
        match = PARCEL.match(topic)
        if match is None or not payload:  # an empty retained message clears a handled parcel
            continue
        site, recipient, _sender = match.groups()
        stranger = next(k for d, k in boxes.items() if d != recipient)
        with pytest.raises(ParcelError, match="not-for-us"):
            open_parcel(payload, topic, site=site, recipient_key=stranger, recipient=recipient, senders=senders)
        opened = open_parcel(
            payload, topic, site=site, recipient_key=boxes[recipient], recipient=recipient, senders=senders
        )
        if opened.contents.face is not None:
            vectors += [np.frombuffer(v, dtype="<f4") for v in opened.contents.face.vectors]
        if opened.contents.fingerprint is not None:
            templates.append(opened.contents.fingerprint.template)
    # anna and dan (3 face templates each) and cara's finger went to gate 2; ben's (lobby only) did not
    assert len(vectors) == 6
    assert all(v.shape == (128,) for v in vectors)
    assert len(templates) == 1
    assert len(templates[0]) == 1536

    # -- nothing of them in clear, anywhere in what the broker carried (topics included)
    wire = b"\n".join(topic.encode() + b"\x00" + payload for topic, payload in messages)
    assert sum(1 for t, _ in messages if "/events/" in t) >= 20  # the capture saw the whole run
    text = wire.decode("latin-1")
    # the search finds what it looks for: an unsealed copy of one vector, or a template in hex, would fail
    leaky = wire + np.asarray(vectors[0], dtype=">f4").tobytes()[40:72] + templates[0][100:140].hex().encode()
    assert any(piece in leaky for piece in float_forms(vectors[0]))
    assert any(piece.hex().encode() in leaky for piece in windows(templates[0], 24, 8))
    for vector in vectors:
        for piece in float_forms(vector):
            assert piece not in wire, "8 bytes of a face embedding are on the wire in clear"
        for value in vector[:32]:
            if abs(float(value)) >= 0.01:
                assert repr(float(value))[:9] not in text, "an embedding value is on the wire as text"
    for template in templates:
        for piece in windows(template, 16):
            assert piece not in wire, "16 bytes of a sensor template are on the wire in clear"
        for piece in windows(template, 24, 8):
            assert piece.hex().encode() not in wire
            assert base64.b64encode(piece) not in wire
    photos = sorted((work / "camera").iterdir())
    assert photos
    for photo in photos:
        encoded = photo.read_bytes()
        for piece in windows(encoded, 16, 4):
            assert piece not in wire, f"a piece of {photo.name} is on the wire"
        frame = cv2.imread(str(photo))
        assert frame is not None
        pixels = frame.tobytes()
        for piece in windows(pixels, 32, 997):
            if busy(piece):
                assert piece not in wire, f"raw pixels of {photo.name} are on the wire"
    for marker in (b"JFIF", b"Exif", b"\x89PNG\r\n\x1a\n"):
        assert marker not in wire
