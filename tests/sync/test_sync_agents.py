"""Site sync between two provisioned terminals through the agent's own assembly and a real broker.

Two terminals are provisioned with the installer's commands (identity and sync keys), the site's
authority signs a list whose gate roster carries both, and each terminal is assembled as `edge run`
assembles it (publisher, consent thread, site sync). A face enrolled at gate A reaches gate B's
gallery through Mosquitto, and a subscriber on `#` records every byte the broker carried: no
embedding value, in any encoding tried, appears outside the sealed parcels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent.assembly import build_wired
from edge.config.load import load_config
from edge.consent.listformat import Gate
from edge.crypto.keys import device_id, load_box_key, load_signing_key
from edge.demo.stack import CARD_ONLY, SiteAuthority, provision_terminal
from edge.state import StateDir

SUBJECT = "p-lena-07"
MODEL = "test-model"


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_a_face_enrolled_at_one_gate_reaches_the_other_sealed_end_to_end(tmp_path: Path, mosquitto) -> None:
    authority = SiteAuthority(tmp_path / "site", "hq")
    roots = {name: tmp_path / name for name in ("gate-a", "gate-b")}
    configs = {
        name: provision_terminal(
            root, authority, broker_url=mosquitto.url, gate=name, settings={**CARD_ONLY, "metrics": {"enabled": False}}
        )
        for name, root in roots.items()
    }
    gates = []
    for root in roots.values():
        state = StateDir(root)
        identity = load_signing_key(state.identity_key)
        box = load_box_key(state.sync_key)
        gates.append(Gate(device_id(identity.verify_key), bytes(identity.verify_key), bytes(box.public_key)))
    authority.authority.set_gates(sorted(gates, key=lambda g: g.id))
    now = time.time()
    message = authority.issue([authority.entry(SUBJECT, ["face"], granted_at=int(now) - 60)], now=now)

    captured: list[tuple[str, bytes]] = []
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
    spy.on_message = lambda _c, _u, m: captured.append((m.topic, bytes(m.payload)))
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe("#", qos=1)
    spy.loop_start()

    wired = {}
    try:
        for name, config_path in configs.items():
            config, profile = load_config(config_path)
            wired[name] = build_wired(config, profile, StateDir(roots[name]))
        from edge.consent.distribution import Broker, publish_list

        publish_list(Broker(mosquitto.url), "hq", message)  # retained: both consent threads apply it
        a, b = wired["gate-a"], wired["gate-b"]
        assert a.site_sync is not None
        assert b.site_sync is not None
        b.site_sync.face_model = MODEL  # the models loaded on a face gate; these two are card-only
        assert wait_for(lambda: a.consent.version == 1 and b.consent.version == 1)
        rng = np.random.default_rng(3)
        vectors = [v / np.linalg.norm(v) for v in rng.standard_normal((3, 128))]
        sent = a.site_sync.share_face(SUBJECT, vectors, MODEL, int(time.time()), time.time())
        assert sent == [device_id(load_signing_key(StateDir(roots["gate-b"]).identity_key).verify_key)]
        assert wait_for(lambda: b.gallery.search(vectors[0], k=1).subject == SUBJECT), "gate B never got the face"
        hit = b.gallery.search(vectors[1], k=1)
        assert hit.subject == SUBJECT
        assert wait_for(lambda: any(t.startswith("sites/hq/sync/") and p == b"" for t, p in captured))  # cleared
    finally:
        for w in wired.values():
            for close in reversed(w.closers):
                close()
        spy.loop_stop()
        spy.disconnect()
    wire = b"".join(p for _, p in captured)
    assert any(t.startswith("sites/hq/sync/") for t, _ in captured)
    for v in vectors:
        for encoding in ("<f4", ">f4", "<f8"):
            raw = np.asarray(v, dtype=encoding).tobytes()
            assert raw[:16] not in wire, f"an embedding appeared on the wire ({encoding})"
