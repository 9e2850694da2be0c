"""Results that must not depend on the CPU, written as JSON that two machines or two SIMD paths compare.

``python -m edge.testing.parity exact`` computes what must be bit-identical everywhere: the gallery
protection matrix and protected templates, 1:N search (subjects, float64 scores, margins) and 1:1
verification on all three backends over a gallery with near ties below BLAS rounding, weighted
suppression of tied detections, the fixed-order sums themselves. Its ``fast`` part records the plain
BLAS/FAISS scores and their order for the same probes: those are expected to differ between SIMD
paths, which shows the comparison had something to catch.

``python -m edge.testing.parity face --models models`` runs the face pipeline (detector, landmarks,
embedder; accurate and fast embeddings) on a fixed set of images: LFW-dev when the datasets are
present, else the ``face_recognition`` sample photos the demo uses. Embeddings depend on the SIMD
path within the tolerance docs/face.md states; ``compare`` checks it, and that every pairwise
decision at the manifest's thresholds is the same unless its score lies within the tolerance of the
threshold. The report holds embeddings: it is written under ``.cache/`` and never committed.

``python -m edge.testing.parity compare A.json B.json`` prints every difference and exits 1 if any
exact result differs or a face result is outside the tolerance.

The tests (``tests/numeric/``) run ``exact`` under other numpy CPU features, OpenBLAS kernels and
thread counts and FAISS SIMD levels; ``scripts/arm64.sh`` compares an x86 and an arm64 run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

#: L2 distance within which two embeddings of one image from different SIMD paths, thread counts
#: or kernels must agree (docs/face.md, "The same answer on every CPU"); a cosine score against any
#: unit template then moves by at most this much
EMBEDDING_TOLERANCE = 1e-3
#: The same across CPU architectures (x86-64 AVX2/AVX-512 vs arm64 NEON): XNNPACK's kernels there
#: sum in another order, and the int8 model's dynamic-range kernels quantise activations per row on
#: each side, so results agree less closely. Measured by scripts/arm64.sh (docs/arm64.md): float32
#: at most 1.1e-3, int8 at most 9.1e-3; these bounds leave about 2x margin. A pairwise decision may
#: differ only where its score lies within the bound of the threshold.
CROSS_ARCH_TOLERANCE = {"float32": 2.5e-3, "int8": 2e-2}

DIM = 128
SUBJECTS = 400
CLUSTER = 12  # subjects whose scores against the probe differ by less than float32 rounding
BACKENDS = ("numpy", "faiss", "faiss-sq8")


def _digest(*arrays: NDArray[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        c = np.ascontiguousarray(a)
        h.update(str(c.dtype).encode() + str(c.shape).encode())
        h.update(c.tobytes())
    return h.hexdigest()[:32]


def unit_rows(seed: int, n: int, dim: int = DIM) -> F32:
    """Unit float32 rows made from integers with exact elementwise steps: the same on every machine
    (numpy's Gaussian sampler calls libm, which may differ by an ulp between platforms)."""
    from edge.numeric import fixed_sum

    ints = np.random.Generator(np.random.PCG64(seed)).integers(-(2**20), 2**20, size=(n, dim))
    x = ints.astype(np.float64) / 2**20
    norms = np.sqrt(fixed_sum(x * x, axis=1))
    out: F32 = (x / norms[:, None]).astype(np.float32)
    return out


def _near_ties(base: F32, n: int, seed: int) -> F32:
    """``n`` unit rows within about 1e-4 of ``base``: their scores against ``base`` differ by ~1e-8."""
    from edge.numeric import fixed_sum

    noise = np.random.Generator(np.random.PCG64(seed)).integers(-100, 101, size=(n, base.shape[0]))
    x = base.astype(np.float64) + noise.astype(np.float64) * 1e-6
    norms = np.sqrt(fixed_sum(x * x, axis=1))
    out: F32 = (x / norms[:, None]).astype(np.float32)
    return out


def _gallery_data() -> tuple[list[tuple[str, list[F32]]], F32]:
    rows = unit_rows(1, SUBJECTS * 2)
    base = rows[0]
    ties = _near_ties(base, CLUSTER * 2, 2)
    items: list[tuple[str, list[F32]]] = []
    for i in range(SUBJECTS):
        if i < CLUSTER:
            items.append((f"s{i:04d}", [ties[2 * i], ties[2 * i + 1]]))
        else:
            items.append((f"s{i:04d}", [rows[2 * i], rows[2 * i + 1]]))
    probes = np.concatenate([base[None, :], ties[:3], unit_rows(3, 6), rows[CLUSTER * 2 + 1 : CLUSTER * 2 + 4]])
    return items, probes.astype(np.float32)


def exact_report(faiss_threads: int | None = None) -> dict[str, Any]:
    """Everything that must be bit-identical on every CPU, and the plain BLAS figures beside it."""
    from edge.gallery.sealed import GalleryKey, store_key
    from edge.gallery.store import Gallery
    from edge.numeric import Product32, dot_rows, fixed_sum, orthonormal_columns
    from edge.state import StateDir

    exact: dict[str, Any] = {}
    fast: dict[str, Any] = {}
    x = unit_rows(7, 3000)
    q = unit_rows(8, 1)[0]
    exact["fixed_sum"] = float(fixed_sum(x.astype(np.float64).reshape(-1))).hex()
    exact["dot_rows"] = _digest(dot_rows(x, q))
    exact["product32"] = _digest(Product32(x[:DIM].T)(x))
    exact["orthonormal"] = _digest(orthonormal_columns(x[:DIM].astype(np.float64).T))
    fast["blas_scores"] = _digest(x @ q)
    fast["lapack_qr"] = _digest(np.linalg.qr(x[:DIM].astype(np.float64).T)[0])

    items, probes = _gallery_data()
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory() as tmp:
            state = StateDir(Path(tmp) / "state")
            state.ensure()
            store_key(state.gallery_key, GalleryKey(bytes(range(32))))
            with Gallery.open(state, backend=backend, threshold=0.5) as gallery:
                gallery.enrol_many(items)
                if faiss_threads is not None and backend != "numpy":
                    import faiss

                    faiss.omp_set_num_threads(faiss_threads)
                matrix = gallery._protector.matrix
                searches = []
                for probe in probes:
                    found = gallery.search(probe, k=3)
                    runners = [[s, float(v).hex()] for s, v in found.runners_up]
                    searches.append([found.subject, float(found.score).hex(), float(found.margin).hex(), runners])
                verified = [float(gallery.verify(f"s{i:04d}", probes[0])).hex() for i in range(CLUSTER)]
                # the near-tie cluster: enrolling one more face flags the same duplicate everywhere
                enrolled = gallery.enrol("newcomer", "face", templates=[probes[1]])
                duplicate = [enrolled.duplicate_of, float(enrolled.duplicate_score or 0.0).hex()]
                if backend == "numpy":
                    exact["protection_matrix"] = _digest(matrix)
                    exact["protected_templates"] = _digest(gallery._backend.vectors())
                    protected = gallery._protector.apply(probes[:1])
                    plain = gallery._backend.vectors() @ protected[0]
                    cluster = plain[: CLUSTER * 2]
                    fast["blas_gallery_scores"] = _digest(plain)
                    fast["blas_cluster_order"] = np.lexsort((np.arange(len(cluster)), -cluster)).tolist()
                if backend == "faiss":
                    raw, _ = gallery._backend.index.search(gallery._protector.apply(probes[:1]), 50)  # type: ignore[attr-defined]
                    fast["faiss_scores"] = _digest(raw)
            exact[f"search/{backend}"] = searches
            exact[f"verify/{backend}"] = verified
            exact[f"duplicate/{backend}"] = duplicate
    exact["detect_ties"] = _detect_ties()
    exact["lfw_scores"] = _lfw_scores()
    return {"platform": platform_info(), "exact": exact, "fast": fast}


def _detect_ties() -> list[list[str]]:
    from edge.vision.detect import decode

    n = 40
    raw = np.zeros((4 * n, 16), np.float32)
    scores = np.full(4 * n, -8.0, np.float32)
    for i in range(n):
        raw[4 * i + 1, :2] = (0.1 + 0.02 * i, 0.5)
        raw[4 * i + 1, 2:4] = 0.05
        scores[4 * i + 1] = 2.0
        other = 4 * i + 2 + (i % 2)
        raw[other, :2] = (0.1 + 0.02 * i, 0.1 if i % 2 else 0.9)
        raw[other, 2:4] = 0.005
        scores[other] = 3.0 if i % 2 else 1.0
    found = decode(raw, scores, np.zeros((4 * n, 2), np.float32), 1, 0.5)
    return [[float(v).hex() for v in box] for box, _kps, _score in found]


def _lfw_scores() -> list[str]:
    """``edge models evaluate``'s pair scores (cosine and Euclidean) for fixed embeddings."""
    from edge.models.lfw import Pair, score_pairs

    vecs = unit_rows(11, 40) * np.float32(3.0)
    emb: dict[str, tuple[np.ndarray | None, dict[str, float]]] = {f"i{n}": (v, {}) for n, v in enumerate(vecs)}
    pairs = [Pair(n % 5, f"i{n}", f"i{(n * 7 + 3) % 40}", n % 2 == 0) for n in range(40)]
    return [float(v).hex() for metric in ("cosine", "euclidean") for v in score_pairs(pairs, emb, metric).sims]


def platform_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("NPY_", "OPENBLAS_", "OMP_", "FAISS_", "QEMU_")) and k != "OPENBLAS_VERBOSE"
        },
    }
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[import-not-found]

        info["numpy_simd"] = sorted(k for k, v in __cpu_features__.items() if v)
    except ImportError:
        pass
    try:
        import faiss

        info["faiss"] = f"{faiss.__version__} {faiss.SIMDConfig.get_level_name()}"
    except (ImportError, AttributeError):
        pass
    return info


# ----------------------------------------------------------------------------- the face pipeline


def parity_images(limit: int = 24) -> tuple[str, list[Path]]:
    """(source, images): LFW-dev's first photo of every n-th person when present, else the demo's
    ``face_recognition`` sample photos (fetched into .cache/demo)."""
    from edge.datasets import REPO_ROOT, dataset

    lfw = dataset("lfw-dev")
    if lfw is not None:
        people = sorted(p for p in (lfw / "lfw-deepfunneled").iterdir() if p.is_dir())
        step = max(1, len(people) // limit)
        chosen = [sorted(p.glob("*.jpg"))[0] for p in people[::step][:limit]]
        return "lfw-dev", chosen
    from edge.demo.data import fetch_face_samples

    folder = fetch_face_samples(REPO_ROOT / ".cache" / "demo")
    return "face_recognition-1.3.0 samples", sorted(folder.glob("*.jpg"))


def face_report(
    models: Path, threads: int = 2, reference: bool = False, limit: int = 24, variant: str = "float32"
) -> dict[str, Any]:
    import cv2

    from edge.vision import runtime
    from edge.vision.pipeline import FacePipeline, Variant

    source, images = parity_images(limit)
    if variant not in ("float32", "int8"):
        raise SystemExit(f"parity: unknown model variant {variant!r}; use float32 or int8")
    model: Variant = "int8" if variant == "int8" else "float32"
    if reference:
        with runtime.reference_kernels():
            pipeline = FacePipeline.load(models, model, threads=threads)
    else:
        pipeline = FacePipeline.load(models, model, threads=threads)
    results: dict[str, Any] = {}
    for path in images:
        frame = cv2.imread(str(path))
        if frame is None:
            raise SystemExit(f"parity: cannot read {path}")
        accurate = pipeline.process(frame, rule="center")
        fast = pipeline.probe(frame, rule="center", uncertain=lambda _e: False)
        name = f"{path.parent.name}/{path.name}"
        if accurate is None or fast is None:
            results[name] = None
            continue
        results[name] = {
            "faces": accurate.faces,
            "box": [round(float(v), 3) for v in accurate.box],
            "accurate": [float(v) for v in accurate.embedding],
            "fast": [float(v) for v in fast.embedding],
        }
    info = pipeline.manifest
    return {
        "platform": platform_info(),
        "face": {
            "source": source,
            "threads": threads,
            "variant": variant,
            "kernels": "reference" if reference else "xnnpack",
            "threshold": info.threshold,
            "probe_threshold": info.probe_threshold,
            "images": results,
        },
    }


# ----------------------------------------------------------------------------- comparing two reports


def compare(
    a: dict[str, Any], b: dict[str, Any], tolerance: float = EMBEDDING_TOLERANCE
) -> tuple[list[str], list[str]]:
    """(problems, notes): problems make the comparison fail; notes are figures worth printing."""
    problems: list[str] = []
    notes: list[str] = []
    if "exact" in a or "exact" in b:
        ea, eb = a.get("exact", {}), b.get("exact", {})
        for key in sorted(set(ea) | set(eb)):
            if ea.get(key) != eb.get(key):
                problems.append(f"exact result {key!r} differs")
        fa, fb = a.get("fast", {}), b.get("fast", {})
        changed = [key for key in sorted(set(fa) | set(fb)) if fa.get(key) != fb.get(key)]
        notes.append(f"plain BLAS/LAPACK figures that differ (expected across SIMD paths): {changed or 'none'}")
    if "face" in a or "face" in b:
        problems_face, notes_face = _compare_face(a.get("face", {}), b.get("face", {}), tolerance)
        problems += problems_face
        notes += notes_face
    return problems, notes


def _compare_face(a: dict[str, Any], b: dict[str, Any], tolerance: float) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    ia, ib = a.get("images", {}), b.get("images", {})
    if sorted(ia) != sorted(ib):
        return [f"the two runs embedded different images ({len(ia)} vs {len(ib)})"], []
    names = [n for n in sorted(ia) if ia[n] is not None or ib[n] is not None]
    for name in names:
        if (ia[name] is None) != (ib[name] is None) or ia[name]["faces"] != ib[name]["faces"]:
            problems.append(f"{name}: faces found differ")
    names = [n for n in names if ia[n] is not None and ib[n] is not None]
    worst = 0.0
    for kind in ("accurate", "fast"):
        ea = np.array([ia[n][kind] for n in names], dtype=np.float64)
        eb = np.array([ib[n][kind] for n in names], dtype=np.float64)
        if not names:
            continue
        dist = np.sqrt(((ea - eb) ** 2).sum(axis=1))
        worst = max(worst, float(dist.max()))
        for name, d in zip(names, dist.tolist(), strict=True):
            if d > tolerance:
                problems.append(f"{name}: {kind} embeddings {d:.2e} apart (tolerance {tolerance:g})")
        threshold = a["threshold"] if kind == "accurate" else a["probe_threshold"]
        sa, sb = ea @ ea.T, eb @ eb.T
        flipped = (sa >= threshold) != (sb >= threshold)
        near = np.abs(sa - threshold) <= tolerance
        for i, j in zip(*np.nonzero(np.triu(flipped & ~near, 1)), strict=True):
            problems.append(f"{names[i]} vs {names[j]}: {kind} decision differs outside the tolerance band")
        in_band = int(np.triu(flipped & near, 1).sum())
        gap = float(np.abs(sa - sb).max())
        notes.append(
            f"{kind}: {len(names)} images, max embedding distance {float(dist.max()):.2e}, max pair score "
            f"difference {gap:.2e}, decisions flipped within the band: {in_band}"
        )
    notes.append(f"worst embedding distance {worst:.2e} (tolerance {tolerance:g})")
    return problems, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.testing.parity", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("exact", help="results that must be bit-identical on every CPU")
    ex.add_argument("--faiss-threads", type=int, default=None)
    ex.add_argument("--out", type=Path)
    fc = sub.add_parser("face", help="face pipeline results, equal within the tolerance")
    fc.add_argument("--models", type=Path, default=Path("models"))
    fc.add_argument("--threads", type=int, default=2)
    fc.add_argument("--reference-kernels", action="store_true")
    fc.add_argument("--limit", type=int, default=24)
    fc.add_argument("--variant", choices=("float32", "int8"), default="float32")
    fc.add_argument("--out", type=Path)
    cp = sub.add_parser("compare", help="compare two reports; exit 1 on a difference")
    cp.add_argument("a", type=Path)
    cp.add_argument("b", type=Path)
    cp.add_argument("--tolerance", type=float, default=EMBEDDING_TOLERANCE)
    args = parser.parse_args(argv)
    if args.cmd == "compare":
        problems, notes = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()), args.tolerance)
        lines = [f"parity: {line}" for line in notes] + [f"parity: DIFFERS: {line}" for line in problems]
        lines.append(f"parity: {args.a} vs {args.b}: {'FAILED' if problems else 'ok'}")
        sys.stdout.write("\n".join(lines) + "\n")
        return 1 if problems else 0
    if args.cmd == "exact":
        report = exact_report(args.faiss_threads)
    else:
        report = face_report(args.models, args.threads, args.reference_kernels, args.limit, args.variant)
    text = json.dumps(report, indent=1, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
