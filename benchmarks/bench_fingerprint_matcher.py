"""Accuracy of the simulator's matcher on the FVC2002 dev pairs (dev numbers, not acceptance numbers).

    EDGE_DATASETS=/path/to/datasets python benchmarks/bench_fingerprint_matcher.py [--limit-fingers N]

Features come from afis's Gabor extractor (cached under .cache/fpsim/templates by image SHA-256) and
are stored exactly as the simulated module stores them (quantised, at most 40 minutiae). Pairs follow
the FVC protocol: genuine = every pair of impressions of a finger (28 per finger); impostor = first
impressions of different fingers of the same database. Prints FMR/FNMR at each security level's
threshold, the EER, and the same figures for a named peer matcher on the same minutiae: afis's
"geometric" matcher.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict

from edge.fingerprint.sim.fingers import FingerLibrary, FingerRef
from edge.fingerprint.sim.module import SECURITY_THRESHOLDS
from edge.fingerprint.sim.templates import FeatureSet, Matcher, decode_template, encode_template


def eer(genuine: list[float], impostor: list[float]) -> tuple[float, float]:
    best = (1.0, 0.0)
    for t in sorted(set(genuine) | set(impostor)):
        fmr = sum(s >= t for s in impostor) / len(impostor)
        fnmr = sum(s < t for s in genuine) / len(genuine)
        gap = abs(fmr - fnmr)
        if gap < best[0]:
            best = (gap, (fmr + fnmr) / 2)
            best_t = t
    return best[1], best_t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit-fingers", type=int, default=0, help="use only the first N fingers of each DB")
    ap.add_argument("--model-template-size", type=int, default=512)
    ap.add_argument(
        "--impostors",
        choices=["fvc", "all"],
        default="fvc",
        help="fvc: first impressions of different fingers; all: every cross-finger impression pair in a DB",
    )
    args = ap.parse_args()
    lib = FingerLibrary()
    if not lib.has_datasets():
        print("FVC2002 dev data not found (set EDGE_DATASETS)", file=sys.stderr)
        return 2
    fingers = lib.fingers()
    by_db: dict[str, list[str]] = defaultdict(list)
    for f in fingers:
        by_db[f.rsplit("-", 1)[0]].append(f)
    if args.limit_fingers:
        by_db = {db: fs[: args.limit_fingers] for db, fs in by_db.items()}
    sets: dict[str, FeatureSet] = {}
    t0 = time.time()
    for db_fingers in by_db.values():
        for finger in db_fingers:
            for imp in range(1, 9):
                ref = FingerRef(finger, imp)
                _, fs = lib.load(ref)
                stored = decode_template(encode_template([fs], args.model_template_size))
                if stored:
                    sets[str(ref)] = stored[0]
    print(f"features for {len(sets)} impressions in {time.time() - t0:.0f} s (cached after the first run)")

    import numpy as np
    from afis.algorithms.matcher import geometric_match

    matcher = Matcher()
    results: dict[str, dict[str, list[float]]] = {
        "bozorth3 (simulator)": {"gen": [], "imp": []},
        "afis geometric (peer)": {"gen": [], "imp": []},
    }
    pairs: list[tuple[str, str, str]] = []
    for db_fingers in by_db.values():
        for finger in db_fingers:
            for i, j in itertools.combinations(range(1, 9), 2):
                pairs.append(("gen", f"{finger}:{i}", f"{finger}:{j}"))
        for a, b in itertools.combinations(db_fingers, 2):
            if args.impostors == "fvc":
                pairs.append(("imp", f"{a}:1", f"{b}:1"))
            else:
                pairs += [("imp", f"{a}:{i}", f"{b}:{j}") for i in range(1, 9) for j in range(1, 9)]
    t0 = time.time()
    timing = {"bozorth3 (simulator)": 0.0, "afis geometric (peer)": 0.0}
    for kind, a, b in pairs:
        sa, sb = sets.get(a), sets.get(b)
        if sa is None or sb is None:
            score_b = score_g = 0.0
        else:
            t = time.perf_counter()
            score_b = float(matcher.score([sa], [sb]))
            timing["bozorth3 (simulator)"] += time.perf_counter() - t
            t = time.perf_counter()
            score_g, _ = geometric_match(np.array(sa.minutiae), np.array(sb.minutiae))
            timing["afis geometric (peer)"] += time.perf_counter() - t
        results["bozorth3 (simulator)"][kind].append(score_b)
        results["afis geometric (peer)"][kind].append(float(score_g))
    n_gen = sum(k == "gen" for k, _, _ in pairs)
    print(f"{n_gen} genuine and {len(pairs) - n_gen} impostor pairs over {len(by_db)} databases")
    for name, res in results.items():
        rate, thr = eer(res["gen"], res["imp"])
        print(
            f"{name:24s} EER {rate * 100:5.1f}% at threshold {thr:.3f}; {timing[name] / len(pairs) * 1000:.1f} ms/pair"
        )
    gen, imp = results["bozorth3 (simulator)"]["gen"], results["bozorth3 (simulator)"]["imp"]
    print("security level -> Bozorth3 threshold: FMR / FNMR on the dev pairs")
    for level, thr in SECURITY_THRESHOLDS.items():
        fmr = sum(s >= thr for s in imp) / len(imp)
        fnmr = sum(s < thr for s in gen) / len(gen)
        print(f"  level {level} (score >= {thr:3d}): FMR {fmr * 100:5.1f}%  FNMR {fnmr * 100:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
