"""Withdrawal-to-deletion latency with 10k subjects (goal: p99 <= 1 s).

A device holds a 10k-entry list and two SQLite template stores (face: 3 templates per subject,
fingerprint: 1), all durable (WAL, synchronous=FULL). For each of N withdrawals the authority
signs the next list, and the clock runs from the moment the device has the list's bytes until the
deletion receipt is emitted: verify, decode, apply in one transaction, audit, purge both stores,
audit the deletion, emit the receipt. Measured for deltas and for full 10k snapshots (what the
retained MQTT topic carries).

Peers, in the same run:
* pycose 1.1.0 (an independent COSE library): decode + verify the same 10k-entry snapshot,
  against our verify + strict decode;
* sqlite3 alone: deleting one subject's rows from the same stores (the floor for deletion).

    .venv/bin/python benchmarks/bench_consent_withdrawal.py [--subjects 10000] [--withdrawals 50]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.audit.log import AuditLog  # noqa: E402
from edge.consent import trust  # noqa: E402
from edge.consent.authority import Authority  # noqa: E402
from edge.consent.enforce import Enforcer  # noqa: E402
from edge.consent.ledger import ConsentLedger  # noqa: E402
from edge.consent.listformat import make_entry  # noqa: E402
from edge.consent.signing import LIST_AAD, verify_list  # noqa: E402
from edge.consent.teststores import SqliteStore  # noqa: E402
from edge.state import StateDir  # noqa: E402

SITE = "bench-site"
PURPOSE = "access:main-gate"


class TimedSink:
    def __init__(self) -> None:
        self.receipts: list[tuple[float, Mapping[str, object]]] = []

    def emit(self, kind: str, body: Mapping[str, object]) -> None:
        if kind == "deletion_receipt":
            self.receipts.append((time.perf_counter(), body))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<58} n={len(ms):<4} p50={statistics.median(ms):8.2f} ms  p99={pct(ms, 99):8.2f} ms  "
        f"max={max(ms):8.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--withdrawals", type=int, default=50, help="per list kind")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cache = ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="bench-consent-") as tmp:
        root = Path(tmp)
        now = time.time()
        auth = Authority(root / "authority")
        auth.keygen(SITE)
        subjects = [f"p-{i:06d}" for i in range(args.subjects)]
        roster = {s: make_entry(s, [PURPOSE], ["face", "fingerprint"], int(now) - 3600) for s in subjects}
        t = time.perf_counter()
        first, _ = auth.issue(roster, now=now)
        print(
            f"authority signed a {args.subjects}-entry snapshot ({len(first)} bytes) in {time.perf_counter() - t:.2f} s"
        )

        state = StateDir(root / "device")
        state.ensure()
        for pub in auth.root.glob("consent-authority-*.pub"):
            trust.pin(state, bytes.fromhex(pub.read_text()))
        audit = AuditLog.open(state.audit_db, SigningKey.generate())
        ledger = ConsentLedger.open(state, SITE, grace_period_s=86400, audit=audit)
        face = SqliteStore(root / "face.sqlite3", "gallery", "face")
        finger = SqliteStore(root / "finger.sqlite3", "sensor", "fingerprint")
        face.add_many((s, os.urandom(512)) for s in subjects for _ in range(3))
        finger.add_many((s, os.urandom(512)) for s in subjects)
        sink = TimedSink()
        enforcer = Enforcer(ledger, [face, finger], sink, audit, purpose=PURPOSE)
        t = time.perf_counter()
        enforcer.apply(first, now)
        print(
            f"device applied it in {time.perf_counter() - t:.2f} s; stores hold {face.count()} + {finger.count()} templates"
        )

        results: dict[str, list[float]] = {"delta": [], "snapshot": []}
        order = rng.sample(subjects, 2 * args.withdrawals)
        for i, subject in enumerate(order):
            kind = "delta" if i % 2 == 0 else "snapshot"
            now += 1
            message, _ = auth.withdraw(subject, now=now, delta=kind == "delta")
            start = time.perf_counter()
            enforcer.apply(message, now)
            done, body = sink.receipts[-1]
            assert body["subject"] == subject, "receipt for the wrong subject"
            assert subject not in face.subjects()
            assert subject not in finger.subjects()
            results[kind].append(done - start)

        # peer 1: pycose on the same 10k snapshot, against our verify + strict decode
        import cbor2
        from pycose.keys import OKPKey
        from pycose.keys.curves import Ed25519
        from pycose.messages import Sign1Message

        latest, _ = auth.reissue(now=now)
        keys = trust.load_pinned(state)
        (pub,) = keys.values()
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(10):
            t = time.perf_counter()
            verify_list(latest, keys)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            msg = Sign1Message.decode(latest)
            msg.external_aad = LIST_AAD
            msg.key = OKPKey(crv=Ed25519, x=bytes(pub))
            assert msg.verify_signature()
            cbor2.loads(msg.payload)
            theirs.append(time.perf_counter() - t)

        # peer 2: sqlite3 alone deleting one subject's rows from both stores
        floor: list[float] = []
        for subject in rng.sample([s for s in subjects if s not in set(order)], args.withdrawals):
            t = time.perf_counter()
            face.delete_subject(subject)
            finger.delete_subject(subject)
            floor.append(time.perf_counter() - t)

        print()
        print(f"withdrawal-to-deletion, {args.subjects} subjects, list bytes in -> receipt out (goal p99 <= 1000 ms):")
        print(row("  ours: delta list (verify, apply, purge 2 stores, audit)", results["delta"]))
        print(row(f"  ours: {args.subjects}-entry snapshot list", results["snapshot"]))
        print(row("  peer sqlite3 alone: DELETE one subject from both stores", floor))
        print(f"verifying the {len(latest)}-byte snapshot:")
        print(row("  ours: COSE verify + strict schema decode", ours))
        print(row("  peer pycose 1.1.0: decode + verify + cbor2.loads", theirs))
        worst = max(pct(results["delta"], 99), pct(results["snapshot"], 99))
        print(f"\nworst p99 {worst * 1000:.1f} ms: {'MEETS' if worst <= 1.0 else 'MISSES'} the 1 s goal")
        ledger.close()
        audit.close()
        face.close()
        finger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
