"""1:N search latency of the gallery per backend, beside raw faiss-cpu IndexFlatIP in the same run.

    EDGE_DATASETS=../shared/datasets .venv/bin/python benchmarks/bench_gallery.py --sizes 1000,10000,100000,1000000

Vectors: the cached LFW-dev dlib descriptors (run bench_gallery_lfw.py first), one gallery template
per person, filled up to N with blends of real descriptors (they sit in the same region of the
space, so they compete with the true match the way more enrolled people would). Probes: the other
LFW-dev images of enrolled people. Every figure is the median single-probe latency over the probes.

Printed per size:
- peers: raw faiss IndexFlatIP at 1 and 2 threads (ratios are to the faster), raw numpy
  ``argmax(X @ q)`` at numpy's default threads and at one, the same product on the transposed
  matrix the numpy backend keeps, raw faiss SQ8 index;
- the Gallery (real encrypted store, protective transform) with each backend, top-1 and top-2+margin,
  and its overhead over the raw index it wraps;
- top-1 decisions (subject, accepted at the dev threshold) of each backend against float32 numpy.
- the numpy backend's top-1 against a plain row-major ``X @ q`` on the same protected matrix.
With ``--rss``: per backend, a fresh process opens the 100k gallery and prints its open time and
peak RSS (VmHWM) minus its baseline after imports, beside the raw matrix size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


TIMED_PROBES = 200


def round_robin(
    groups: list[dict[str, Callable[[np.ndarray], object]]], probes: np.ndarray, rounds: int = 3
) -> dict[str, float]:
    """Median single-probe ms per method. Methods of a group take turns block by block, and the
    groups take turns each round, so load from other processes falls on all of them alike.
    Each method runs a block of probes per turn. Groups keep thread pools apart: FAISS's OpenMP threads and numpy's BLAS threads spin after a
    call, and interleaving them call by call measures their fight, not either of them."""
    times: dict[str, list[float]] = {name: [] for group in groups for name in group}
    block = 25  # probes per turn: caches are as warm as one method alone would have them
    for _ in range(rounds):
        for group in groups:
            for start in range(0, len(probes), block):
                chunk = probes[start : start + block]
                for name, fn in group.items():
                    fn(chunk[0])  # not timed: the previous method's data has just left the cache
                    for q in chunk[1:]:
                        t = time.perf_counter()
                        fn(q)
                        times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}


def paired(a: Callable[[np.ndarray], object], b: Callable[[np.ndarray], object], probes: np.ndarray) -> float:
    """median(a) / median(b) - 1, the two called alternately on each probe (order swapped every
    probe), so both see the same data in cache and the same load from other processes."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(3):
        for i, q in enumerate(probes):
            for fn, out in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
                t = time.perf_counter()
                fn(q)
                out.append(time.perf_counter() - t)
    return float(np.median(ta) / np.median(tb) - 1)


def load_lfw(pairs_n: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray, float]:
    import bench_gallery_lfw as lfwmod

    from edge.datasets import dataset

    lfw = dataset("lfw-dev")
    if lfw is None:
        raise SystemExit("LFW dev data not found (set EDGE_DATASETS)")
    pairs = lfwmod.read_pairs(lfw, pairs_n)
    vecs = lfwmod.embed(lfw, {p.a for p in pairs} | {p.b for p in pairs}, progress=True)
    scores, same = lfwmod.pair_scores(pairs, vecs)
    threshold, _ = lfwmod.best_threshold(scores, same)
    gallery, probes = lfwmod.identification_split(pairs)
    names = [r.split("/")[0] for r in gallery]
    return (
        names,
        np.stack([vecs[r] for r in gallery]),
        [p.split("/")[0] for p in probes],
        np.stack([vecs[p] for p in probes]),
        threshold,
    )


def fill(base: np.ndarray, n: int, seed: int = 11) -> np.ndarray:
    """``base`` followed by blends of random pairs of its rows, normalised, ``n`` rows in all."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    for start in range(len(base), n, 100_000):
        stop = min(n, start + 100_000)
        m = stop - start
        blend = base[rng.integers(0, len(base), m)] + base[rng.integers(0, len(base), m)]
        blend += 0.05 * rng.standard_normal(blend.shape).astype(np.float32)
        out[start:stop] = blend / np.linalg.norm(blend, axis=1, keepdims=True)
    return out


def build_store(root: Path, names: list[str], matrix: np.ndarray) -> float:
    """Enrol every row as one subject through the real store; returns seconds taken."""
    from edge.gallery.store import Gallery
    from edge.state import StateDir

    state = StateDir(root)
    state.ensure()
    t = time.perf_counter()
    with Gallery.open(state, create_key=True) as g:
        subjects = names + [f"x{i}" for i in range(len(names), len(matrix))]
        for start in range(0, len(matrix), 50_000):
            g.enrol_many([(subjects[i], [matrix[i]]) for i in range(start, min(len(matrix), start + 50_000))])
    return time.perf_counter() - t


def bench_size(
    n: int, names: list[str], base: np.ndarray, truth: list[str], probes: np.ndarray, threshold: float
) -> None:
    import faiss

    from edge.gallery.backends import FaissSQ8Backend, one_blas_thread
    from edge.gallery.store import Gallery
    from edge.state import StateDir

    x = fill(base, n)
    timing = probes[: min(len(probes), TIMED_PROBES)]
    print(f"\n== {n:,} templates ({x.nbytes / 1e6:.0f} MB float32), {len(timing)} single probes x 3, median ms")
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
        root = Path(tmp) / "state"
        secs = build_store(root, names, x)
        print(f"   store built: {n:,} subjects enrolled in {secs:.1f} s (sealed; one transaction per 50k)")
        galleries = {}
        for backend in ("numpy", "faiss", "faiss-sq8"):
            t = time.perf_counter()
            galleries[backend] = Gallery.open(StateDir(root), backend=backend, templates_per_subject=1)
            print(f"   opened with {backend}: {time.perf_counter() - t:.1f} s (decrypt + load)")
        try:
            flat = faiss.IndexFlatIP(x.shape[1])
            flat.add(x)

            def flat2(q: np.ndarray) -> object:
                faiss.omp_set_num_threads(2)
                try:
                    return flat.search(q[None], 1)
                finally:
                    faiss.omp_set_num_threads(1)

            # the raw indexes each gallery wraps, given the protected probe the gallery computes
            g_np, g_fl, g_sq = galleries["numpy"], galleries["faiss"], galleries["faiss-sq8"]
            m_np = g_np._backend._buf[:, : len(g_np)]  # the numpy backend's dim x n matrix
            xt = np.ascontiguousarray(x.T)

            def one_thread(fn: Callable[[], int]) -> int:
                with one_blas_thread():
                    return fn()

            prot = {name: g._protector for name, g in galleries.items()}
            scale = FaissSQ8Backend.SCALE
            short = FaissSQ8Backend.SHORTLIST
            blas: dict[str, Callable[[np.ndarray], object]] = {
                "raw numpy argmax(X @ q), 1 BLAS thread": lambda q: one_thread(lambda: int(np.argmax(x @ q))),
                "raw numpy argmax(q @ X.T), X.T stored, 1 BLAS thread": lambda q: one_thread(
                    lambda: int(np.argmax(np.matmul(q, xt)))
                ),
                "Gallery numpy     top-1": lambda q: g_np.search(q, k=1),
                "Gallery numpy     top-2 + margin": lambda q: g_np.search(q, k=2),
                "  wrapped: numpy argmax(q' @ M) on the gallery matrix": lambda q: one_thread(
                    lambda: int(np.argmax(np.matmul(prot["numpy"].apply_one(q), m_np)))
                ),
            }
            # numpy's default BLAS threads, alone: their workers spin after each call
            blas_default: dict[str, Callable[[np.ndarray], object]] = {
                f"raw numpy argmax(X @ q), default BLAS threads ({os.cpu_count()} cores)": lambda q: int(
                    np.argmax(x @ q)
                ),
            }
            omp1: dict[str, Callable[[np.ndarray], object]] = {
                "raw faiss IndexFlatIP, 1 thread  [PEER]": lambda q: flat.search(q[None], 1),
                "Gallery faiss     top-1": lambda q: g_fl.search(q, k=1),
                "Gallery faiss     top-2 + margin": lambda q: g_fl.search(q, k=2),
                "Gallery faiss-sq8 top-1": lambda q: g_sq.search(q, k=1),
                "Gallery faiss-sq8 top-2 + margin": lambda q: g_sq.search(q, k=2),
                "  wrapped: faiss flat search(q', 1) of the gallery": lambda q: g_fl._backend.index.search(
                    prot["faiss"].apply_one(q)[None], 1
                ),
                f"  wrapped: faiss SQ8 search(q', {short}) of the gallery": lambda q: g_sq._backend.index.search(
                    (prot["faiss-sq8"].apply_one(q) * scale)[None].astype(np.float32), short
                ),
            }
            omp2: dict[str, Callable[[np.ndarray], object]] = {"raw faiss IndexFlatIP, 2 threads": flat2}
            faiss.omp_set_num_threads(1)
            ms = round_robin([omp1, blas], timing)
            # two OpenMP threads and default BLAS threads last and alone: their workers spin after each call
            ms.update(round_robin([blas_default], timing))
            ms.update(round_robin([omp2], timing))
            one, two = ms["raw faiss IndexFlatIP, 1 thread  [PEER]"], ms["raw faiss IndexFlatIP, 2 threads"]
            peer = min(one, two)
            print(f"   ratios are to raw faiss flat at its faster thread count here: {1 if one <= two else 2}")
            for name, value in ms.items():
                print(f"   {name:62s} {value:8.3f} ms   {value / peer:5.2f}x raw faiss flat")
            for backend, wrapped in (
                ("numpy", "  wrapped: numpy argmax(q' @ M) on the gallery matrix"),
                ("faiss", "  wrapped: faiss flat search(q', 1) of the gallery"),
                ("faiss-sq8", f"  wrapped: faiss SQ8 search(q', {short}) of the gallery"),
            ):
                g_fn = (blas | omp1)[f"Gallery {backend:9s} top-1"]
                own = paired(g_fn, (blas | omp1)[wrapped], timing)
                print(f"   gallery overhead over the raw index it wraps, {backend:9s}: {own:+.1%} (paired per probe)")
            flat.reset()
            # the numpy backend against a plain row-major product on the same protected matrix
            rowmajor = np.ascontiguousarray(g_np._backend.vectors())
            same_top, worst = 0, 0.0
            for q in probes:
                r = g_np.search(q, k=1)
                qp = prot["numpy"].apply_one(q / np.linalg.norm(q))
                plain = rowmajor @ qp
                row = int(np.argmax(plain))
                same_top += r.subject == g_np._subjects.name(int(g_np._row_subject[row]))
                worst = max(worst, abs(r.score - float(plain[row])))
            print(
                f"   numpy backend top-1 == argmax of plain row-major X @ q': {same_top}/{len(probes)}, "
                f"max |score difference| {worst:.1e}"
            )
            del rowmajor
            decisions: dict[str, list[tuple[str | None, bool]]] = {}
            for backend, g in galleries.items():
                out = []
                for q in probes:
                    r = g.search(q, k=1)
                    out.append((r.subject, r.score >= threshold))
                decisions[backend] = out
        finally:
            for g in galleries.values():
                g.close()
    for backend in ("faiss", "faiss-sq8"):
        same = sum(1 for a, b in zip(decisions[backend], decisions["numpy"], strict=True) if a == b)
        print(f"   top-1 decisions {backend} == numpy float32: {same}/{len(probes)}")
    correct = sum(1 for (s, ok), t in zip(decisions["numpy"], truth, strict=True) if ok and s == t)
    print(f"   LFW probes accepted as the right person (threshold {threshold:.3f}): {correct}/{len(probes)}")


def vm_hwm() -> int:
    """Peak resident bytes of this process image (VmHWM; ru_maxrss survives fork+exec on Linux,
    so a child would report its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_child(root: str, backend: str, n: int, dim: int) -> None:
    """Run in a fresh process: baseline peak RSS after imports, then peak after open + searches."""
    import faiss  # noqa: F401  (imported before the baseline so it is part of it)

    from edge.gallery.store import Gallery
    from edge.state import StateDir

    rng = np.random.default_rng(0)
    q = rng.standard_normal(dim).astype(np.float32)
    _ = np.ones((64, 64)) @ np.ones(64)  # BLAS threads started
    base = vm_hwm()
    t = time.perf_counter()
    with Gallery.open(StateDir(Path(root)), backend=backend, templates_per_subject=5) as g:
        opened = time.perf_counter() - t
        for _ in range(50):
            g.search(q)
        peak = vm_hwm()
    matrix = n * dim * 4
    print(
        f"   {backend:9s}: open {opened:4.1f} s; baseline {base / 1e6:6.1f} MB, peak {peak / 1e6:6.1f} MB, "
        f"peak - baseline {(peak - base) / 1e6:6.1f} MB = {(peak - base) / matrix:.2f}x the "
        f"{matrix / 1e6:.1f} MB matrix"
    )


def bench_rss(base: np.ndarray, n: int = 100_000) -> None:
    print(f"\n== peak RSS opening a {n:,}-template gallery in a fresh process (goal: <= 1.3x matrix + baseline)")
    x = fill(base, n)
    for per_subject in (1, 5):
        with tempfile.TemporaryDirectory(dir=REPO / ".cache") as tmp:
            root = Path(tmp) / "state"
            from edge.gallery.store import Gallery
            from edge.state import StateDir

            state = StateDir(root)
            state.ensure()
            with Gallery.open(state, create_key=True, templates_per_subject=5) as g:
                people = n // per_subject
                for start in range(0, people, 20_000):
                    stop = min(people, start + 20_000)
                    g.enrol_many(
                        [(f"p{i}", list(x[i * per_subject : (i + 1) * per_subject])) for i in range(start, stop)]
                    )
            print(f"   -- {n // per_subject:,} subjects x {per_subject} template(s)")
            for backend in ("numpy", "faiss", "faiss-sq8"):
                subprocess.run(
                    [sys.executable, __file__, "--rss-child", str(root), backend, str(n)],
                    check=True,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )


def main() -> int:
    parser = argparse.ArgumentParser(description="Gallery 1:N latency beside raw faiss-cpu")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated template counts ('' for none)")
    parser.add_argument("--pairs", type=int, default=1200, help="LFW-dev pairs whose images are used")
    parser.add_argument("--probes", type=int, default=200, help="timed probes per method and round")
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS at 100k")
    parser.add_argument("--rss-child", nargs=3, metavar=("ROOT", "BACKEND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]), 128)
        return 0
    import faiss

    global TIMED_PROBES  # noqa: PLW0603 - a script-wide setting
    TIMED_PROBES = args.probes
    (REPO / ".cache").mkdir(exist_ok=True)
    names, base, truth, probes, threshold = load_lfw(args.pairs)
    print(
        f"faiss {faiss.__version__} ({faiss.get_compile_options().strip()}), numpy {np.__version__}, "
        f"{os.cpu_count()} cores; LFW-dev: {len(names)} enrolled people, {len(probes)} probes; "
        f"load average {os.getloadavg()[0]:.1f} (other processes share the cores: read figures with it)"
    )
    for n in (int(s) for s in args.sizes.split(",") if s):
        bench_size(n, names, base, truth, probes, threshold)
    if args.rss:
        bench_rss(base)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
