"""MQTT publishing figures, all against the same local Mosquitto in the same run.

Peers (named, same broker, same payload size):
- raw: unsigned payloads of the signed events' size, paho QoS 1, 20 in flight (paho's default);
- signed: the same, but every payload is built by EventSigner (guard + CBOR + COSE_Sign1 Ed25519);
- awaited: raw vs signed when each PUBACK is awaited before the next publish;
- drain: 10k signed events queued in the SQLite outbox, drained by MqttPublisher (PUBACK deletes);
- Ed25519: EventSigner.sign and Verifier.verify beside PyNaCl's raw sign/verify of the same bytes.

Run: .venv/bin/python benchmarks/bench_mqtt.py [--n 10000] [--broker mqtt://127.0.0.1:PORT]
Without --broker it starts its own Mosquitto (edge.testing.mosquitto) on a free loopback port.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion

from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner, MemorySeqStore
from edge.events.kinds import Access
from edge.events.outbox_sink import OutboxSink
from edge.modality import Modality
from edge.site.registry import Registry
from edge.site.verifier import Verifier
from edge.testing.mosquitto import Mosquitto
from edge.transport import topics
from edge.transport.mqtt import MqttPublisher, MqttSettings
from edge.transport.outbox import Outbox

ACCESS = Access("granted", Modality.face, "p-000123", "match", latency_ms=180)
BODY = ACCESS.body()


def client(settings: MqttSettings, name: str) -> paho.Client:
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
    c.max_inflight_messages_set(20)
    c.connect(settings.host, settings.port, 30)
    return c


def pipelined(settings: MqttSettings, topic: str, payloads: object, n: int) -> float:
    """Publish n messages as fast as paho allows with 20 in flight; seconds until the last PUBACK."""
    done = threading.Event()
    acked = 0

    def on_publish(_c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    c = client(settings, f"bench-pipe-{time.monotonic_ns()}")
    c.on_publish = on_publish
    c.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    for payload in payloads:  # type: ignore[attr-defined]
        c.publish(topic, payload(), qos=1)
    done.wait(300)
    elapsed = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return elapsed


def awaited(settings: MqttSettings, topic: str, make: object, n: int) -> float:
    """Publish n messages one at a time, each PUBACK awaited before the next publish."""
    c = client(settings, f"bench-sync-{time.monotonic_ns()}")
    c.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    for _ in range(n):
        c.publish(topic, make(), qos=1).wait_for_publish(10)  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return elapsed


def awaited_overlapped(settings: MqttSettings, topic: str, make: object, n: int) -> float:
    """As ``awaited``, but the next payload is signed while the current PUBACK is on its way (how the
    agent works: events are signed when they happen, not when the broker is ready)."""
    c = client(settings, f"bench-sync2-{time.monotonic_ns()}")
    c.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    payload = make()  # type: ignore[operator]
    for _ in range(n):
        info = c.publish(topic, payload, qos=1)
        payload = make()  # type: ignore[operator]
        info.wait_for_publish(10)
    elapsed = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-awaited", type=int, default=3_000)
    parser.add_argument("--broker", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        broker = None
        if args.broker is None:
            broker = Mosquitto(Path(tmp) / "broker")
            broker.start()
            url = broker.url
        else:
            url = args.broker
        try:
            run(MqttSettings.from_url(url), Path(tmp), args.n, args.n_awaited)
        finally:
            if broker is not None:
                broker.stop()


def run(settings: MqttSettings, tmp: Path, n: int, n_awaited: int) -> None:
    key = SigningKey.generate()
    dev = device_id(key.verify_key)
    topic = topics.for_event("bench", dev, "access")
    signer = EventSigner(key, dev, MemorySeqStore())
    size = len(signer.sign(topic, "access", BODY))
    raw = bytes(size)
    load = os.getloadavg()[0]
    print(f"broker {settings.describe()}, payload {size} bytes, n={n}, {os.cpu_count()} cores, load average {load:.1f}")
    print("rates are medians of 3 alternating rounds")

    def raw_make() -> bytes:
        return raw

    def signed_make() -> bytes:
        return signer.sign(topic, "access", BODY)

    # Alternate the peers in rounds and report medians: the machine is shared, its load drifts.
    rounds = 3
    rates: dict[str, list[float]] = {"raw": [], "signed": [], "raw_aw": [], "signed_aw": [], "signed_aw2": []}
    per, per_aw = n // rounds, n_awaited // rounds
    for _ in range(rounds):
        rates["raw"].append(per / pipelined(settings, topic, (raw_make for _ in range(per)), per))
        rates["signed"].append(per / pipelined(settings, topic, (signed_make for _ in range(per)), per))
        rates["raw_aw"].append(per_aw / awaited(settings, topic, raw_make, per_aw))
        rates["signed_aw"].append(per_aw / awaited(settings, topic, signed_make, per_aw))
        rates["signed_aw2"].append(per_aw / awaited_overlapped(settings, topic, signed_make, per_aw))
    rows: list[tuple[str, float]] = [
        ("raw unsigned paho QoS1, 20 in flight (peer)", statistics.median(rates["raw"])),
        ("signed (guard+COSE Ed25519) paho QoS1, 20 in flight", statistics.median(rates["signed"])),
        ("raw unsigned, each PUBACK awaited (peer)", statistics.median(rates["raw_aw"])),
        ("signed, each PUBACK awaited", statistics.median(rates["signed_aw"])),
    ]
    signed_aw2 = statistics.median(rates["signed_aw2"])

    outbox = Outbox(tmp / "outbox.sqlite3")
    sink = OutboxSink(EventSigner(key, dev, outbox), outbox, "bench")
    start = time.perf_counter()
    with outbox.batch():  # one commit for the whole fill; per-event commits are measured below
        for _ in range(n):
            sink.emit(ACCESS)
    fill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(200):
        sink.emit(ACCESS)
    commit_each = 200 / (time.perf_counter() - start)
    publisher = MqttPublisher(settings, outbox, site="bench", device_id=dev)
    start = time.perf_counter()
    publisher.start()
    assert publisher.wait_drained(600), "outbox did not drain"
    drain = time.perf_counter() - start
    publisher.stop()
    outbox.close()
    rows.append((f"outbox fill: emit {n} in one transaction (guard+sign+insert)", n / fill))
    rows.append((f"outbox drain: {n + 200} queued signed events to PUBACK-delete", (n + 200) / drain))
    rows.append(("emit with its own fsynced commit (synchronous=FULL), 200 events", commit_each))

    for label, rate in rows:
        print(f"  {label:<70} {rate:>10.0f} msg/s")
    raw_rate, signed_rate, raw_aw, signed_aw = rows[0][1], rows[1][1], rows[2][1], rows[3][1]
    print(f"  signed / raw (pipelined)           {signed_rate / raw_rate:.2f}x")
    print(f"  signed / raw (PUBACK awaited)      {signed_aw / raw_aw:.2f}x   (goal >= 0.8x)")
    print(
        f"  signed, PUBACK awaited, next event signed during the round trip: {signed_aw2:.0f} msg/s "
        f"= {signed_aw2 / raw_aw:.2f}x raw"
    )
    print(f"  outbox drain / raw (pipelined)     {rows[5][1] / raw_rate:.2f}x   (goal >= 0.35x)")

    # Ed25519: our envelope vs PyNaCl raw on the same key and message size.
    m = 5_000
    message = bytes(size)
    start = time.perf_counter()
    for _ in range(m):
        key.sign(message)
    nacl_sign = m / (time.perf_counter() - start)
    signed = key.sign(message)
    vk = key.verify_key
    start = time.perf_counter()
    for _ in range(m):
        vk.verify(signed)
    nacl_verify = m / (time.perf_counter() - start)
    start = time.perf_counter()
    events = [signer.sign(topic, "access", BODY) for _ in range(m)]
    env_sign = m / (time.perf_counter() - start)
    registry = Registry()
    registry.add("bench", vk)
    verifier = Verifier(registry, window=2 * m)
    start = time.perf_counter()
    for e in events:
        verifier.verify(topic, e)
    env_verify = m / (time.perf_counter() - start)
    print("Ed25519")
    print(f"  PyNaCl raw sign ({size} B)                      {nacl_sign:>10.0f} /s (peer)")
    print(f"  EventSigner.sign (guard+CBOR+COSE)             {env_sign:>10.0f} /s")
    print(f"  PyNaCl raw verify                              {nacl_verify:>10.0f} /s (peer)")
    print(f"  Verifier.verify (COSE+schema+replay)           {env_verify:>10.0f} /s")


if __name__ == "__main__":
    main()
