"""The same results on every SIMD path and thread count this machine can switch to.

Each variant runs ``python -m edge.testing.parity exact`` in a fresh process with one CPU feature
set, BLAS kernel, thread count or FAISS SIMD level changed; every result that decides something
(protection matrix and templates, 1:N search on all backends over near ties below float32
rounding, 1:1 verification, the duplicate flag, weighted suppression of tied detections) must be
bit-identical to the default run. The plain BLAS figures recorded beside them must differ in some
variant, or the variants did not exercise different kernels and the test proved nothing.
Before the gallery re-scored its shortlist exactly, OPENBLAS_CORETYPE=Prescott picked other best
subjects for 4 of 13 probes here, and FAISS_SIMD_LEVEL=NONE for 3.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.testing.parity import compare, exact_report, face_report

REPO = Path(__file__).resolve().parents[2]

X86 = platform.machine() in ("x86_64", "AMD64")
X86_VARIANTS = {
    "numpy without AVX-512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4"},
    "numpy at its SSE4.2 baseline": {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL"},
    "OpenBLAS Haswell (AVX2) kernels": {"OPENBLAS_CORETYPE": "Haswell"},
    "OpenBLAS Sandybridge (AVX) kernels": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "OpenBLAS Prescott (SSE3) kernels": {"OPENBLAS_CORETYPE": "Prescott"},
    "OpenBLAS on one thread": {"OPENBLAS_NUM_THREADS": "1"},
    "FAISS without SIMD": {"FAISS_SIMD_LEVEL": "NONE"},
    "FAISS AVX2": {"FAISS_SIMD_LEVEL": "AVX2"},
}
#: On 64-bit ARM (the terminals): OpenBLAS's generic ARMv8 kernels and one thread, FAISS without NEON. Whether these change the plain figures depends on
#: the core, so only x86 requires that they did; the cross-architecture comparison is
#: scripts/arm64.sh's parity step.
ARM_VARIANTS = {
    "OpenBLAS generic ARMv8 kernels": {"OPENBLAS_CORETYPE": "ARMV8"},
    "OpenBLAS on one thread": {"OPENBLAS_NUM_THREADS": "1"},
    "FAISS without SIMD": {"FAISS_SIMD_LEVEL": "NONE"},
}
VARIANTS = X86_VARIANTS if X86 else ARM_VARIANTS


def _run(env: dict[str, str], *args: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NPY_", "OPENBLAS_", "FAISS_"))}
    out = subprocess.run(
        [sys.executable, "-m", "edge.testing.parity", "exact", *args],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


@pytest.mark.slow
def test_decisions_are_bit_identical_on_every_simd_path_and_thread_count():
    base = _run({})
    assert base == {**base, "exact": exact_report()["exact"]}  # in-process equals a fresh process
    changed_fast: set[str] = set()
    runs = {
        **{name: _run(env) for name, env in VARIANTS.items()},
        "FAISS on two threads": _run({}, "--faiss-threads", "2"),
    }
    for name, report in runs.items():
        problems, _notes = compare(base, report)
        assert problems == [], name
        changed_fast |= {k for k in base["fast"] if base["fast"][k] != report["fast"][k]}
    # the variants did exercise other kernels: plain BLAS scores, the plain ranking of the near-tie
    # cluster, FAISS's own scores and LAPACK's QR all changed somewhere (known on x86's kernels)
    if X86:
        assert {"blas_scores", "blas_cluster_order", "faiss_scores", "lapack_qr"} <= changed_fast


def test_numpy_and_faiss_hold_the_same_rows_so_they_return_the_same_scores():
    exact = exact_report()["exact"]
    assert exact["search/numpy"] == exact["search/faiss"]
    assert exact["verify/numpy"] == exact["verify/faiss"]
    assert exact["duplicate/numpy"] == exact["duplicate/faiss"]
    # faiss-sq8 holds its rows to 6.1e-8 (other last bits): the same subjects wherever the probe is
    # not inside the near-tie cluster (the first four probes)
    subjects = [[s[0], *(r[0] for r in s[3])] for s in exact["search/numpy"]]
    sq8 = [[s[0], *(r[0] for r in s[3])] for s in exact["search/faiss-sq8"]]
    assert sq8[4:] == subjects[4:]


@pytest.mark.slow
@pytest.mark.needs_models
def test_embeddings_agree_across_litert_threads_and_kernels(tmp_path):
    models = REPO / "models"
    if not (models / "manifest.json").is_file():
        pytest.skip("model bundle not built (edge models build)")
    two = face_report(models, threads=2, limit=6)
    one = face_report(models, threads=1, limit=6)
    reference = face_report(models, threads=1, reference=True, limit=6)
    assert sum(v is not None for v in two["face"]["images"].values()) >= 4
    problems, _ = compare(two, one)
    assert problems == []
    # XNNPACK on one and two threads: the same bits (measured), so no tolerance is spent here
    assert two["face"]["images"] == one["face"]["images"]
    problems, notes = compare(two, reference)
    assert problems == [], notes
    assert two["face"]["images"] != reference["face"]["images"]  # other kernels, other last bits
