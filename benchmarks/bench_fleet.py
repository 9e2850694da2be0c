"""A fleet of gates on one Mosquitto: site-wide enrolment and withdrawal, timed (issue 14).

K gates run as the agent assembles them, minus cameras and sensors: each has its own state
directory with the real stores (consent ledger, gallery, audit log, outbox, sync store), the real
enforcer, the consent thread (``ConsentService``) with site sync attached as the agent attaches it
(``edge.sync.wiring.attach``), and its own MQTT connection (``MqttPublisher``: outbox drain,
consent and sync-inbox subscriptions). The gates live in worker processes of at most
``--per-process`` gates each (a real gate is one process; paho's select() loop also cannot serve
sockets above descriptor 1024, which 100 gates' stores in one process pass). A consent authority
signs one list with every person (scope: the whole site) and the roster of all K gates.

1. Enrolment: ``--enrolments`` people, enrolled round robin over the gates (each worker enrols its
   gates' people one after another, the workers at once), each enrolment stored locally through
   the enforcer and shared (``SiteSync.share_face``: one sealed parcel per other gate, retained).
   Time from the share to the template being stored at each recipient (its sync store's applied
   time): p50 / p99 / max per (person, recipient), and to the *last* recipient per person ("usable
   at every gate"). Bytes on the wire per synced template: the parcel sizes.
2. Withdrawal: ``--withdrawals`` people withdrawn one list at a time (published retained, as the
   authority does); time from the publish to each gate's signed deletion receipt arriving at a
   subscriber on the broker: per receipt, and per withdrawal (the last of the K receipts).
3. CPU seconds of the gate processes (user + system) and of the broker over the run.

The peer, printed in the same run: the same enrolments and withdrawals with K = 2 (each enrolment
sealed for one other gate, each withdrawal confirmed by two: no fan-out).

Run: ``.venv/bin/python benchmarks/bench_fleet.py --gates 20 --enrolments 1000 --withdrawals 20``
and ``--gates 100``. Figures: docs/sync.md.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.consent.authority import Authority
from edge.consent.distribution import Broker, publish_list
from edge.consent.listformat import Gate, make_entry
from edge.crypto.keys import device_id
from edge.testing.mosquitto import Mosquitto

SITE = "fleet"
PURPOSE = "access:main-gate"
MODEL = "bench-model"


# ============================================================================ one worker process


@dataclass
class FleetGate:
    identity: SigningKey
    box: PrivateKey
    root: Path
    closers: list[Any] = field(default_factory=list)
    sync: Any = None
    ledger: Any = None
    gallery: Any = None
    enforcer: Any = None
    sizes: list[int] = field(default_factory=list)

    @property
    def id(self) -> str:
        return device_id(self.identity.verify_key)


class CountingOutbox:
    """The gate's outbox, noting the size of every sealed parcel put on it (what the broker carries)."""

    def __init__(self, inner: Any, sizes: list[int]) -> None:
        self.inner = inner
        self.sizes = sizes

    def put(self, topic: str, payload: bytes, seq: int = 0, *, retain: bool = False) -> int:
        if payload and "/sync/" in topic:
            self.sizes.append(len(payload))
        return int(self.inner.put(topic, payload, seq, retain=retain))


def start_gate(gate: FleetGate, broker_url: str, authority_keys: list[bytes]) -> None:
    from edge.agent.subsystems import ConsentService
    from edge.audit.log import AuditLog
    from edge.consent import trust
    from edge.consent.distribution import ConsentReceiver, consent_subscriptions, pinned_keys
    from edge.consent.enforce import Enforcer
    from edge.consent.ledger import ConsentLedger
    from edge.events.envelope import EventSigner
    from edge.events.outbox_sink import OutboxSink
    from edge.gallery.store import Gallery
    from edge.gallery.stores import FaceStore
    from edge.state import StateDir
    from edge.sync.service import SiteSync
    from edge.sync.store import SyncStore
    from edge.sync.wiring import attach
    from edge.transport.mqtt import MqttPublisher, MqttSettings
    from edge.transport.outbox import Outbox

    state = StateDir(gate.root)
    state.ensure()
    for key in authority_keys:
        trust.pin(state, key)
    me = gate.id
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
        outbox=CountingOutbox(outbox, gate.sizes),
        sink=sink,
        audit=audit,
        face_model=MODEL,
    )
    consent = ConsentService(enforcer, sink)
    subscriptions = list(consent_subscriptions(SITE))
    receiver = ConsentReceiver(SITE, pinned_keys(state), consent.submit).on_message
    on_message = attach(sync, consent, subscriptions, receiver)  # as the agent's assembly does
    publisher = MqttPublisher(
        MqttSettings.from_url(broker_url),
        outbox,
        site=SITE,
        device_id=me,
        subscriptions=subscriptions,
        on_message=on_message,
    )
    consent.start()
    publisher.start()
    gate.sync, gate.ledger, gate.gallery, gate.enforcer = sync, ledger, gallery, enforcer
    gate.closers = [
        publisher.stop,
        consent.stop,
        sync.store.close,
        gallery.close,
        ledger.close,
        outbox.close,
        audit.close,
    ]


def vectors_for(person: str) -> list[Any]:
    rng = np.random.default_rng(int(person.split("-")[1]))
    return [v / np.linalg.norm(v) for v in rng.standard_normal((3, 128))]


def enrol_and_share(gate: FleetGate, person: str) -> float:
    """The local enrolment, as ``edge-provision enrol`` does it, then the share; when it was shared."""
    vectors = vectors_for(person)
    now = time.time()
    gallery = gate.gallery

    def write() -> object:
        return gallery.enrol(person, "face", templates=vectors, model_id=MODEL)

    gate.enforcer.enrol(person, "face", now, write)
    gate.sync.share_face(person, vectors, MODEL, int(now), now)
    return now


def worker(conn: Connection, broker_url: str, keys: list[tuple[bytes, bytes, str]], authority: list[bytes]) -> None:
    """Serve a few gates; commands from the parent over ``conn``."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    gates = [FleetGate(SigningKey(s), PrivateKey(b), Path(root)) for s, b, root in keys]
    for g in gates:
        start_gate(g, broker_url, authority)
    by_id = {g.id: g for g in gates}
    conn.send("started")
    try:
        while True:
            command, arg = conn.recv()
            if command == "version":  # wait until every gate here has applied list ``arg``
                deadline = time.monotonic() + 300
                while any((g.ledger.version or 0) < arg for g in gates) and time.monotonic() < deadline:
                    time.sleep(0.05)
                conn.send(all((g.ledger.version or 0) >= arg for g in gates))
            elif command == "enrol":  # [(gate id, person)]: enrol and share, one after another
                conn.send({person: enrol_and_share(by_id[gid], person) for gid, person in arg})
            elif command == "applied":
                conn.send([(g.id, s, at) for g in gates for s, _m, at in g.sync.store.applied()])
            elif command == "sizes":
                conn.send([n for g in gates for n in g.sizes])
            elif command == "stop":
                break
    finally:
        for g in gates:
            for close in g.closers:
                try:
                    close()
                except Exception as exc:
                    print(f"  closing gate {g.id}: {exc.__class__.__name__}", file=sys.stderr)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        conn.send(usage.ru_utime + usage.ru_stime)
        conn.close()


# ============================================================================ the parent


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Workers:
    """The gate processes: ``per_process`` gates each."""

    def __init__(self, keys: list[tuple[bytes, bytes, str]], broker_url: str, authority: list[bytes], per: int):
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(0, len(keys), per):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, broker_url, keys[i : i + per], authority), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "started":
                raise SystemExit("a gate process did not start")

    def ask(self, command: str, arg: Any = None, args: list[Any] | None = None) -> list[Any]:
        for i, conn in enumerate(self.conns):
            conn.send((command, arg if args is None else args[i]))
        return [conn.recv() for conn in self.conns]

    def stop(self) -> float:
        cpu = 0.0
        for conn in self.conns:
            try:
                conn.send(("stop", None))
                cpu += float(conn.recv())
            except (EOFError, OSError):
                pass
        for proc in self.procs:
            proc.join(30)
        return cpu


def run(k: int, enrolments: int, withdrawals: int, workdir: Path, per: int) -> dict[str, Any]:
    broker = Mosquitto(workdir / "broker")
    broker.start()
    authority = Authority(workdir / "authority")
    authority.keygen(SITE)
    authority_keys = [bytes.fromhex(p.read_text()) for p in sorted(authority.root.glob("consent-authority-*.pub"))]
    identities = [(SigningKey.generate(), PrivateKey.generate()) for _ in range(k)]
    ids = [device_id(s.verify_key) for s, _ in identities]
    authority.set_gates(
        sorted(
            (Gate(device_id(s.verify_key), bytes(s.verify_key), bytes(b.public_key)) for s, b in identities),
            key=lambda g: g.id,
        )
    )
    people = [f"p-{i:05d}" for i in range(max(enrolments, withdrawals))]
    t_issue = time.time()
    message, _ = authority.issue(
        {p: make_entry(p, [PURPOSE], ["face"], int(t_issue) - 60) for p in people}, now=t_issue
    )
    publish_list(Broker(broker.url), SITE, message)
    broker_cpu0 = cpu_of(broker.pid or 0)
    keys = [(bytes(s), bytes(b), str(workdir / f"gate-{n:03d}")) for n, (s, b) in enumerate(identities)]
    workers = Workers(keys, broker.url, authority_keys, per)
    agents_cpu = float("nan")
    try:
        if not all(workers.ask("version", 1)):
            raise SystemExit("the gates did not all apply the list in 300 s")
        spy = ReceiptSpy(broker.port)
        # 1. enrolments: round robin over the gates; each worker enrols its own gates' people
        plan: list[list[tuple[str, str]]] = [[] for _ in workers.conns]
        for i, person in enumerate(people[:enrolments]):
            gate = i % k
            plan[gate // per].append((ids[gate], person))
        t0 = time.monotonic()
        shared_at: dict[str, float] = {}
        for part in workers.ask("enrol", args=plan):
            shared_at.update(part)
        expected = enrolments * (k - 1)
        latencies: list[float] = []
        per_person: dict[str, float] = {}
        deadline = time.monotonic() + 1800
        while True:
            latencies, per_person = [], {}
            for rows in workers.ask("applied"):
                for _gate, subject, at in rows:
                    if subject in shared_at:
                        latencies.append(at - shared_at[subject])
                        per_person[subject] = max(per_person.get(subject, 0.0), at - shared_at[subject])
            if len(latencies) >= expected or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        enrol_s = time.monotonic() - t0
        sizes = [n for part in workers.ask("sizes") for n in part]
        # 2. withdrawals, one list each
        per_receipt: list[float] = []
        per_withdrawal: list[float] = []
        for person in people[:withdrawals]:
            msg, _ = authority.withdraw(person, now=time.time())
            t = time.monotonic()
            publish_list(Broker(broker.url), SITE, msg)
            got: list[float] = []
            wait_until = time.monotonic() + 60
            while time.monotonic() < wait_until:
                with spy.lock:
                    got = [spy.seen[(g, person)] for g in ids if (g, person) in spy.seen]
                if len(got) == k:
                    break
                time.sleep(0.005)
            per_receipt += [x - t for x in got]
            if len(got) == k:
                per_withdrawal.append(max(got) - t)
        spy.close()
    finally:
        agents_cpu = workers.stop()
        broker_cpu = cpu_of(broker.pid or 0) - broker_cpu0 if broker.pid else float("nan")
        broker.stop()
    return {
        "k": k,
        "processes": len(workers.conns),
        "enrolments": enrolments,
        "synced": len(latencies),
        "expected": expected,
        "enrol_wall_s": enrol_s,
        "usable_p50": pct(latencies, 50),
        "usable_p99": pct(latencies, 99),
        "usable_max": max(latencies) if latencies else float("nan"),
        "all_gates_p50": pct(list(per_person.values()), 50),
        "all_gates_p99": pct(list(per_person.values()), 99),
        "bytes_per_template": statistics.median(sizes) if sizes else float("nan"),
        "parcels": len(sizes),
        "withdrawals": withdrawals,
        "complete_withdrawals": len(per_withdrawal),
        "receipt_p50": pct(per_receipt, 50),
        "receipt_p99": pct(per_receipt, 99),
        "all_receipts_p50": pct(per_withdrawal, 50),
        "all_receipts_p99": pct(per_withdrawal, 99),
        "agents_cpu_s": agents_cpu,
        "broker_cpu_s": broker_cpu,
    }


def fingerprint_parcel_bytes() -> int:
    """The size of one sealed, signed parcel carrying an R503 char file (1536 bytes)."""
    from edge.modality import Modality
    from edge.sync.parcel import Contents, SensorTemplate, seal

    contents = Contents("p-00001", Modality.fingerprint, 1, 1, fingerprint=SensorTemplate("r503", bytes(1536)))
    _topic, message = seal(
        contents,
        site=SITE,
        sender_key=SigningKey.generate(),
        recipient=device_id(SigningKey.generate().verify_key),
        recipient_box_key=PrivateKey.generate().public_key,
        parcel_id=bytes(16),
        issued_at=1,
    )
    return len(message)


def report(r: dict[str, Any], label: str) -> None:
    print(f"{label}: K={r['k']} gates in {r['processes']} process(es)")
    if r["enrolments"]:
        print(
            f"  enrolment -> stored at each other gate: {r['synced']}/{r['expected']} in {r['enrol_wall_s']:.1f} s; "
            f"p50 {r['usable_p50'] * 1e3:.0f} ms, p99 {r['usable_p99'] * 1e3:.0f} ms, max {r['usable_max'] * 1e3:.0f} ms"
        )
        print(
            f"  enrolment -> usable at every gate (the last one): p50 {r['all_gates_p50'] * 1e3:.0f} ms, "
            f"p99 {r['all_gates_p99'] * 1e3:.0f} ms"
        )
        print(
            f"  on the wire: {r['parcels']} parcels, {r['bytes_per_template']:.0f} bytes each (3 face templates, 128-d)"
        )
    print(
        f"  withdrawal -> all {r['k']} receipts: {r['complete_withdrawals']}/{r['withdrawals']} complete; "
        f"p50 {r['all_receipts_p50'] * 1e3:.0f} ms, p99 {r['all_receipts_p99'] * 1e3:.0f} ms "
        f"(single receipts p50 {r['receipt_p50'] * 1e3:.0f} ms, p99 {r['receipt_p99'] * 1e3:.0f} ms)"
    )
    print(f"  CPU: gate processes {r['agents_cpu_s']:.1f} s, broker {r['broker_cpu_s']:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", type=int, default=20)
    ap.add_argument("--enrolments", type=int, default=1000)
    ap.add_argument("--withdrawals", type=int, default=20)
    ap.add_argument("--per-process", type=int, default=25, help="gates per worker process")
    args = ap.parse_args()
    per = max(1, args.per_process)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        Path(tmp).chmod(0o755)  # the broker drops to its own user and writes its log in here
        peer = run(2, args.enrolments, args.withdrawals, Path(tmp) / "peer", per)
        fleet = run(args.gates, args.enrolments, args.withdrawals, Path(tmp) / "fleet", per)
    report(peer, "peer (two gates: one recipient per enrolment, no fan-out)")
    report(fleet, "fleet")
    print(f"  a sealed R503 fingerprint template (1536 bytes) is {fingerprint_parcel_bytes()} bytes on the wire")
    print(f"  ({math.ceil(args.gates / per)} gate process(es); {os.cpu_count()} CPUs on this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
