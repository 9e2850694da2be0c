"""A fleet of gates on one Mosquitto: site-wide enrolment and withdrawal, timed (issue 14).

K gates run in this process as the agent assembles them, minus cameras and sensors: each has its
own state directory with the real stores (consent ledger, gallery, audit log, outbox, sync store),
the real enforcer, the consent thread (``ConsentService``) with site sync hooked in, and its own
MQTT connection (``MqttPublisher``: outbox drain, consent and sync-inbox subscriptions). A consent
authority signs one list with every person (scope: the whole site) and the roster of all K gates.

1. Enrolment: ``--enrolments`` people, each enrolled at one gate (round robin) and shared
   (``SiteSync.share_face``: one sealed parcel per other gate, retained). Time from the share to
   the template being stored at each recipient (the sync store's applied time): p50 / p99 / max
   over every (person, recipient) pair. Bytes per synced template: the parcel size on the wire.
2. Withdrawal: ``--withdrawals`` people withdrawn one list at a time (published retained, as the
   authority does); time from the publish to each gate's signed deletion receipt arriving at a
   subscriber on the broker: p50 / p99 / max per receipt and per withdrawal (the last gate).
3. CPU seconds of this process (all K gates) and of the broker over the run.

The peer, printed in the same run: the same withdrawal with K = 1 (one gate, no fan-out).

Run: ``.venv/bin/python benchmarks/bench_fleet.py --gates 20 --enrolments 1000 --withdrawals 20``
(K = 100: ``--gates 100 --enrolments 200``; each enrolment is K-1 sealed parcels and gallery writes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.agent.subsystems import ConsentService
from edge.audit.log import AuditLog
from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.distribution import Broker, ConsentReceiver, consent_subscriptions, pinned_keys, publish_list
from edge.consent.enforce import Enforcer
from edge.consent.ledger import ConsentLedger
from edge.consent.listformat import Gate, make_entry
from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner
from edge.events.outbox_sink import OutboxSink
from edge.gallery.store import Gallery
from edge.gallery.stores import FaceStore
from edge.state import StateDir
from edge.sync.service import SiteSync
from edge.sync.store import SyncStore
from edge.testing.mosquitto import Mosquitto
from edge.transport.mqtt import MqttPublisher, MqttSettings
from edge.transport.outbox import Outbox

SITE = "fleet"
PURPOSE = "access:main-gate"
MODEL = "bench-model"


@dataclass
class FleetGate:
    identity: SigningKey
    box: PrivateKey
    state: StateDir
    closers: list[Any] = field(default_factory=list)
    sync: SiteSync | None = None
    publisher: MqttPublisher | None = None
    consent: ConsentService | None = None
    ledger: ConsentLedger | None = None
    gallery: Gallery | None = None
    enforcer: Enforcer | None = None

    @property
    def id(self) -> str:
        return device_id(self.identity.verify_key)


def make_gate(root: Path, authority: Authority, n: int) -> FleetGate:
    state = StateDir(root / f"gate-{n:03d}")
    state.ensure()
    for pub in authority.root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    return FleetGate(SigningKey.generate(), PrivateKey.generate(), state)


def start_gate(gate: FleetGate, broker_url: str) -> None:
    state, me = gate.state, gate.id
    audit = AuditLog.open(state.audit_db, gate.identity, synchronous="NORMAL")
    ledger = ConsentLedger.open(state, SITE, grace_period_s=3600.0, audit=audit, device=me)
    gallery = Gallery.open(state, create_key=True)
    outbox = Outbox(state.outbox_db)
    sink = OutboxSink(EventSigner(gate.identity, me, outbox, audit=audit), outbox, SITE, audit=audit)
    enforcer = Enforcer(ledger, [FaceStore(gallery)], sink, audit, purpose=PURPOSE)
    sync = SiteSync(
        site=SITE,
        identity=gate.identity,
        box=gate.box,
        ledger=ledger,
        enforcer=enforcer,
        gallery=gallery,
        store=SyncStore(state.root / "sync.sqlite3"),
        outbox=outbox,
        sink=sink,
        audit=audit,
        face_model=MODEL,
    )
    consent = ConsentService(enforcer, sink)
    consent.hooks.append(sync.process)
    receiver = ConsentReceiver(SITE, pinned_keys(state), consent.submit).on_message
    prefix = f"sites/{SITE}/sync/"

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        if topic.startswith(prefix):
            sync.on_message(topic, payload, retained)
            consent.wake()
        else:
            receiver(topic, payload, retained)

    publisher = MqttPublisher(
        MqttSettings.from_url(broker_url),
        outbox,
        site=SITE,
        device_id=me,
        subscriptions=[*consent_subscriptions(SITE), sync.subscription],
        on_message=on_message,
    )
    consent.start()
    publisher.start()
    gate.sync, gate.publisher, gate.consent, gate.ledger = sync, publisher, consent, ledger
    gate.gallery, gate.enforcer = gallery, enforcer
    gate.closers = [
        publisher.stop,
        consent.stop,
        sync.store.close,
        gallery.close,
        ledger.close,
        outbox.close,
        audit.close,
    ]


def stop_gate(gate: FleetGate) -> None:
    for close in gate.closers:
        try:
            close()
        except Exception as exc:
            print(f"  closing gate {gate.id}: {exc.__class__.__name__}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CountingOutbox:
    """The gate's outbox, noting the size of every sealed parcel put on it (what the broker carries)."""

    def __init__(self, inner: Any, sizes: list[int]) -> None:
        self.inner = inner
        self.sizes = sizes

    def put(self, topic: str, payload: bytes, seq: int = 0, *, retain: bool = False) -> int:
        if payload and "/sync/" in topic:
            self.sizes.append(len(payload))
        return int(self.inner.put(topic, payload, seq, retain=retain))


class ReceiptSpy:
    """A subscriber on every gate's deletion receipts: arrival time per (gate, subject)."""

    def __init__(self, port: int) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="receipt-spy", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"sites/{SITE}/gates/+/events/deletion_receipt", qos=1)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, message: Any) -> None:
        import cbor2

        from edge.events.envelope import decode_payload

        gate = message.topic.split("/")[3]
        try:  # decoded without verifying: the benchmark only times arrivals (edge-site listen verifies)
            sign1 = cbor2.loads(message.payload)
            body = decode_payload(getattr(sign1, "value", sign1)[2]).body
        except Exception:
            return
        with self.lock:
            self.seen.setdefault((gate, str(body.get("subject"))), time.monotonic())

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run(k: int, enrolments: int, withdrawals: int, workdir: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir / "broker")
    broker.start()
    authority = Authority(workdir / "authority")
    authority.keygen(SITE)
    gates = [make_gate(workdir, authority, n) for n in range(k)]
    authority.set_gates(
        sorted((Gate(g.id, bytes(g.identity.verify_key), bytes(g.box.public_key)) for g in gates), key=lambda g: g.id)
    )
    people = [f"p-{i:05d}" for i in range(max(enrolments, withdrawals))]
    t_issue = time.time()
    entries = {p: make_entry(p, [PURPOSE], ["face"], int(t_issue) - 60) for p in people}
    message, _ = authority.issue(entries, now=t_issue)
    publish_list(Broker(broker.url), SITE, message)
    cpu0, broker_cpu0 = time.process_time(), cpu_of(broker.pid or 0)
    try:
        for g in gates:
            start_gate(g, broker.url)
        deadline = time.monotonic() + 120
        while any(g.ledger is None or g.ledger.version != 1 for g in gates):
            if time.monotonic() > deadline:
                raise SystemExit("the gates did not all apply the list in 120 s")
            time.sleep(0.05)
        spy = ReceiptSpy(broker.port)
        # 1. enrolments, shared from their enrolling gate
        rng = np.random.default_rng(1)
        shared_at: dict[str, float] = {}
        sizes: list[int] = []
        for g in gates:
            assert g.sync is not None
            g.sync.outbox = CountingOutbox(g.sync.outbox, sizes)
        t0 = time.monotonic()
        for i, person in enumerate(people[:enrolments]):
            gate = gates[i % k]
            assert gate.sync is not None
            vectors = [v / np.linalg.norm(v) for v in rng.standard_normal((3, 128))]
            shared_at[person] = now = time.time()
            gallery, enforcer = gate.gallery, gate.enforcer
            assert gallery is not None
            assert enforcer is not None

            # the local enrolment at the enrolling gate, as edge-provision enrol does, then the share
            def write(g: Gallery = gallery, who: str = person, vs: list[Any] = vectors) -> object:
                return g.enrol(who, "face", templates=vs, model_id=MODEL)

            enforcer.enrol(person, "face", now, write)
            gate.sync.share_face(person, vectors, MODEL, int(now), now)
        expected = enrolments * (k - 1)
        latencies: list[float] = []
        deadline = time.monotonic() + 600
        while True:
            latencies = []
            for g in gates:
                assert g.sync is not None
                with g.sync.store._lock:
                    rows = g.sync.store._db.execute(
                        "SELECT subject, at FROM received WHERE outcome = 'applied'"
                    ).fetchall()
                latencies += [float(at) - shared_at[str(s)] for s, at in rows if str(s) in shared_at]
            if len(latencies) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        enrol_s = time.monotonic() - t0
        # 2. withdrawals, one list each
        per_receipt: list[float] = []
        per_withdrawal: list[float] = []
        for person in people[:withdrawals]:
            msg, _ = authority.withdraw(person, now=time.time())
            t = time.monotonic()
            publish_list(Broker(broker.url), SITE, msg)
            wait_until = time.monotonic() + 60
            while time.monotonic() < wait_until:
                with spy.lock:
                    got = [spy.seen[(g.id, person)] for g in gates if (g.id, person) in spy.seen]
                if len(got) == k:
                    break
                time.sleep(0.005)
            per_receipt += [x - t for x in got]
            if len(got) == k:
                per_withdrawal.append(max(got) - t)
        spy.close()
    finally:
        for g in gates:
            stop_gate(g)
        broker_cpu = cpu_of(broker.pid or 0) - broker_cpu0 if broker.pid else float("nan")
        broker.stop()
    return {
        "k": k,
        "enrolments": enrolments,
        "synced": len(latencies),
        "expected": expected,
        "enrol_wall_s": enrol_s,
        "usable_p50": pct(latencies, 50),
        "usable_p99": pct(latencies, 99),
        "usable_max": max(latencies) if latencies else float("nan"),
        "bytes_per_template": statistics.median(sizes) if sizes else float("nan"),
        "withdrawals": withdrawals,
        "complete_withdrawals": len(per_withdrawal),
        "receipt_p50": pct(per_receipt, 50),
        "receipt_p99": pct(per_receipt, 99),
        "all_receipts_p50": pct(per_withdrawal, 50),
        "all_receipts_p99": pct(per_withdrawal, 99),
        "agents_cpu_s": time.process_time() - cpu0,
        "broker_cpu_s": broker_cpu,
    }


def report(r: dict[str, Any], label: str) -> None:
    print(f"{label}: K={r['k']} gates")
    if r["enrolments"]:
        print(
            f"  enrolment -> usable at every in-scope gate: {r['synced']}/{r['expected']} templates in "
            f"{r['enrol_wall_s']:.1f} s; p50 {r['usable_p50'] * 1e3:.0f} ms, p99 {r['usable_p99'] * 1e3:.0f} ms, "
            f"max {r['usable_max'] * 1e3:.0f} ms; {r['bytes_per_template']:.0f} bytes per synced template (3 x 128-d)"
        )
    print(
        f"  withdrawal -> all {r['k']} receipts: {r['complete_withdrawals']}/{r['withdrawals']} complete; "
        f"p50 {r['all_receipts_p50'] * 1e3:.0f} ms, p99 {r['all_receipts_p99'] * 1e3:.0f} ms "
        f"(single receipts p50 {r['receipt_p50'] * 1e3:.0f} ms, p99 {r['receipt_p99'] * 1e3:.0f} ms)"
    )
    print(f"  CPU: agents {r['agents_cpu_s']:.1f} s, broker {r['broker_cpu_s']:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", type=int, default=20)
    ap.add_argument("--enrolments", type=int, default=1000)
    ap.add_argument("--withdrawals", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        peer = run(1, args.withdrawals, args.withdrawals, Path(tmp) / "peer")
        fleet = run(args.gates, args.enrolments, args.withdrawals, Path(tmp) / "fleet")
    report(peer, "peer (one gate, no fan-out)")
    report(fleet, "fleet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
