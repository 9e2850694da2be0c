"""Fault soak of `edge run`: random faults for N seconds while a card is presented five times a second.

    .venv/bin/python benchmarks/soak_faults.py [--seconds 600] [--seed 1] [--peer-seconds 60]

Faults, one at a time, every kind once in a random order and again (edge/testing/faultsoak.py):
a damaged gallery row, a broker stop and restart, a full disk, the fingerprint sensor unplugged and
plugged in, the camera's frames gone, the wall clock stepped hours back or forward (and back),
SIGKILL of the agent. Prints: card decisions attempted and served (each presentation a different
card, so every grant names the presentation it answers), credential availability, acknowledged
events verified exactly once (by a subscriber that verifies signatures, like `edge-site listen`),
faults injected against faults reported, failed start-ups and crash loops, store integrity.
Peer in the same command: the same terminal for --peer-seconds with no fault injected.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.testing.faultsoak import FAULTS, run_fault_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peer-seconds", type=float, default=60.0, help="the fault-free peer run (0: none)")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="soak-faults-") as tmp:
        report = run_fault_soak(Path(tmp) / "faults", duration_s=args.seconds, seed=args.seed, say=print)
        print("\n".join(report.lines()))
        same = all(report.reported[f] == report.injected[f] for f in FAULTS)  # clean restarts are not faults
        ok = not report.missing and report.availability >= 0.99 and same
        if args.peer_seconds > 0:
            peer = run_fault_soak(
                Path(tmp) / "peer", duration_s=args.peer_seconds, seed=args.seed, faults=(), say=print
            )
            print("peer (no fault injected):")
            print("\n".join("  " + line for line in peer.lines()[:4]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
