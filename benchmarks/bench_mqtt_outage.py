"""Soak: the issue's full outage variant (30 s broker outages) of tests/transport/test_outage.py.

The test suite runs the same test with 2 s outages x 3 cycles to stay inside the CI budget. This
command runs it with 30 s outages (and more events), prints the wall time, and exits with pytest's
status. The assertion is the same: every event verified exactly once, in sequence order.

Run: .venv/bin/python benchmarks/bench_mqtt_outage.py [--down 30] [--cycles 3] [--events 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--down", type=float, default=30.0, help="seconds the broker stays down per outage")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    env = {
        **os.environ,
        "EDGE_OUTAGE_DOWN_S": str(args.down),
        "EDGE_OUTAGE_CYCLES": str(args.cycles),
        "EDGE_OUTAGE_EVENTS": str(args.events),
    }
    start = time.monotonic()
    rc = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/transport/test_outage.py"],
        cwd=ROOT,
        env=env,
    )
    print(
        f"outage soak: {args.cycles} outages of {args.down:.0f} s, {args.events} events, SIGKILLed agent once: "
        f"{'PASS' if rc == 0 else 'FAIL'} in {time.monotonic() - start:.0f} s"
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
