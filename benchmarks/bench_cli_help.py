"""Time `--help` of every console script, beside a named peer: `python -c pass` (interpreter start).

Run: .venv/bin/python benchmarks/bench_cli_help.py [--repeat N]
Goal (issue 2): each answers in under 0.5 s. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass (peer: interpreter start)": [sys.executable, "-c", "pass"],
    "python -c 'import numpy' (peer: one heavy import)": [sys.executable, "-c", "import numpy"],
    "edge --help": [str(BIN / "edge"), "--help"],
    "edge-provision --help": [str(BIN / "edge-provision"), "--help"],
    "edge-site --help": [str(BIN / "edge-site"), "--help"],
    "edge-fpsim --help": [str(BIN / "edge-fpsim"), "--help"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(f"{'command':55} {'median s':>9} {'max s':>7}")
    for name, argv in COMMANDS.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
        print(f"{name:55} {statistics.median(times):9.3f} {max(times):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
