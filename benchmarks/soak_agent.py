"""10-minute SIGKILL soak of `edge run` (the test suite runs a 60 s version).

    .venv/bin/python benchmarks/soak_agent.py [--minutes 10] [--kills 40]

Prints: events committed vs verified (missing must be 0), restart-to-READY and restart-to-first-
decision times, store integrity. Peer figure in the same run: the same agent's start-up after a
clean SIGTERM stop, so the cost of recovering from a kill is visible next to a normal start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.demo.soak import Agent, run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        report = run_soak(work / "soak", duration_s=args.minutes * 60, kills=args.kills, seed=args.seed, say=print)
        for line in report.lines():
            print(line)
        # peer: clean restarts of the same terminal (SIGTERM, then start)
        agent = Agent(work / "soak" / "terminal" / "edge.toml", work / "soak")
        clean = []
        try:
            from edge.testing.mosquitto import Mosquitto  # noqa: F401 - the broker is gone; the agent starts offline

            for _ in range(3):
                clean.append(agent.start())
                agent.stop()
        finally:
            agent.close()
        print(f"peer: clean start after SIGTERM -> READY: {', '.join(f'{c:.2f} s' for c in clean)}")
        print(f"total wall time {time.monotonic() - t0:.0f} s")
        ok = not report.missing_seqs and set(report.integrity.values()) <= {"ok", "absent"} and report.audit_ok
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
