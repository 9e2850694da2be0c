"""Why faiss-sq8 re-scores its shortlist in two numpy calls: numpy calls made right after a scan.

    .venv/bin/python benchmarks/bench_sq8_rescore.py [--n 100000]

A single-probe SQ8 scan streams every 8-bit code (12.8 MB at 100k x 128) through the caches and
evicts the interpreter's and numpy's own code and data, so whatever Python does next runs cold.
Printed, median microseconds over the probes, each beside its peer in the same run:
- the backend's re-score (one gather of the 32 shortlisted int8 rows, one product, argmax) right
  after a real scan, and the same re-score run twice in a row (warm);
- a fixed five-call numpy sequence after the scan and warm (the effect without any of our data);
- FaissSQ8Backend.top(q, 1) against the raw ``index.search(q', 32)`` it wraps, paired per probe.
Random unit vectors: the figures are about memory, not about which rows match.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()

    import faiss

    from edge.gallery.backends import FaissSQ8Backend

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((args.n, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    backend = FaissSQ8Backend(128)
    backend.add(x)
    probes = rng.standard_normal((args.probes, 128)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    def scan(q: np.ndarray) -> np.ndarray:
        np.multiply(backend._probe_scales, q, out=backend._scratch)
        rows: np.ndarray = backend.index.search(backend._query, FaissSQ8Backend.SHORTLIST)[1][0]
        return rows

    def rescore(rows: np.ndarray) -> object:
        return int(np.matmul(backend._fine._buf[rows], backend._weights).argmax())

    def five_calls(_rows: np.ndarray) -> object:
        a = np.zeros(32)
        a += 1.0
        return np.argsort(a)[:1].astype(np.int64).sum()

    def timed(step: Callable[[np.ndarray], object], warm: bool) -> float:
        ts = []
        for _ in range(3):
            for q in probes:
                rows = scan(q)
                if warm:
                    step(rows)
                t = time.perf_counter()
                step(rows)
                ts.append(time.perf_counter() - t)
        return float(np.median(ts)) * 1e6

    print(f"faiss {faiss.__version__}, {args.n:,} x 128 codes ({args.n * 128 / 1e6:.1f} MB), {args.probes} probes x 3")
    for name, step in (("sq8 re-score: gather + product + argmax", rescore), ("five numpy calls [PEER]", five_calls)):
        cold, warm = timed(step, warm=False), timed(step, warm=True)
        print(f"   {name:42s} after the scan {cold:7.1f} us   warm {warm:6.1f} us   ({cold / warm:4.1f}x)")
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(3):
        for i, q in enumerate(probes):
            pair = ((backend.top, ta), (None, tb)) if i % 2 else ((None, tb), (backend.top, ta))
            for fn, out in pair:
                t = time.perf_counter()
                if fn is None:
                    backend.index.search((q * FaissSQ8Backend.SCALE)[None].astype(np.float32), 32)
                else:
                    fn(q, 1)
                out.append(time.perf_counter() - t)
    raw, top = float(np.median(tb)) * 1e3, float(np.median(ta)) * 1e3
    print(
        f"   raw SQ8 search(q', 32) [PEER] {raw:.3f} ms   FaissSQ8Backend.top(q, 1) {top:.3f} ms   ({top / raw - 1:+.1%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
