"""Fuzz every decoder of outside bytes with generated hostile inputs; count what escapes.

    .venv/bin/python benchmarks/fuzz_decoders.py [--n 100000] [--seed 17] [--only NAME]

For each entry point (``edge.testing.fuzztargets``): N inputs from the hostile CBOR generator
(tags 28/29 and others, indefinite lengths, deep nesting, huge declared lengths, non-canonical
heads, duplicate keys, bignums, NaN/inf floats, wrong types, truncation, byte mutations of valid
messages), each given to the entry point. An input is *refused* (the product's own EdgeError),
*accepted*, or *uncaught* (any other exception: a bug; goal 0). Printed beside the entry point's
inputs/second is the peer: plain ``cbor2.loads`` (inside a try) over the same inputs, in the same
process. Exit status 1 if anything escaped.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import Counter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="inputs per entry point (default 100000)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", default=None, help="run the entry points whose name contains this")
    args = parser.parse_args(argv)

    import logging

    import cbor2

    logging.disable(logging.CRITICAL)  # refusals are logged by design; millions of lines say nothing here

    from edge.errors import EdgeError
    from edge.testing.fuzztargets import targets
    from edge.testing.hostile import RandomChooser

    rows = []
    escaped_total = 0
    header = f"{'entry point':<24} {'inputs':>8} {'refused':>8} {'accepted':>8} {'uncaught':>8} {'inputs/s':>9} {'peer cbor2.loads/s':>19}"
    print(header)
    print("-" * len(header))
    for index, target in enumerate(targets()):
        if args.only and args.only not in target.name:
            continue
        chooser = RandomChooser(args.seed * 1000 + index)
        inputs = [target.generate(chooser) for _ in range(args.n)]
        escaped: Counter[str] = Counter()
        refused = accepted = 0

        started = time.perf_counter()
        for data in inputs:
            try:
                target.run(data)
                accepted += 1
            except EdgeError:
                refused += 1
            except Exception as exc:
                escaped[exc.__class__.__name__] += 1
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        for data in inputs:
            with contextlib.suppress(Exception):  # the peer: what a bare decode costs, errors and all
                cbor2.loads(data)
        peer = time.perf_counter() - started
        uncaught = sum(escaped.values())
        escaped_total += uncaught
        print(
            f"{target.name:<24} {len(inputs):>8} {refused:>8} {accepted:>8} {uncaught:>8} "
            f"{len(inputs) / elapsed:>9.0f} {len(inputs) / peer:>19.0f}",
            flush=True,
        )
        rows.append((target.name, escaped))
    for name, escaped in rows:
        for cls, count in escaped.most_common():
            print(f"  {name}: {count} x {cls}")
    print(f"uncaught exceptions in total: {escaped_total}")
    return 1 if escaped_total else 0


if __name__ == "__main__":
    sys.exit(main())
