"""1:N search backends over the protected template matrix, behind one small interface.

- ``numpy`` (default; no extra dependency): one BLAS matrix-vector product on one thread over the
  float32 matrix stored transposed (``dim x n``), which OpenBLAS streams fastest.
- ``faiss``: faiss-cpu ``IndexFlatIP`` (exact). The gallery's float view is FAISS's own storage,
  so the matrix is held once.
- ``faiss-sq8``: FAISS's 8-bit scalar quantiser (signed direct codes, a quarter of the memory
  traffic of float32) shortlists candidates, which are then re-scored from a three-level int8 copy
  exact to float32 rounding: scores, and so decisions, are those of the float path whenever the
  true best rows make the shortlist.

Rows keep their order when rows are removed, so the caller's row -> subject map can be compacted
with the same mask. FAISS runs a single probe fastest on one OpenMP thread; its backends set that.
The numpy backend holds OpenBLAS to one thread for the product only (``one_blas_thread``).

The same answer on every CPU: a BLAS or FAISS score depends in its last bits on the SIMD kernel
(AVX2, AVX-512, NEON) and thread count, so it only shortlists. Every row whose fast score lies
within twice a proven error bound (``edge.numeric.blas_bound``, 7.6e-6 for 128 dimensions) of the
cut is re-scored with ``edge.numeric.dot_rows`` (exact products, fixed-order float64 sum), and
rows are ranked by (that score descending, row ascending). Scores returned by ``top`` and
``best_subjects`` are those float64 values: bit-identical for the same rows and probe on every
machine, and numpy and faiss, which hold the same float32 rows, return the same scores.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge.errors import StorageError
from edge.numeric import U32, blas_bound, dot_rows

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
BACKENDS = ("numpy", "faiss", "faiss-sq8")


class SearchBackend(Protocol):
    name: str

    def __len__(self) -> int: ...

    def add(self, vectors: F32) -> None: ...

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        """Append ``n`` rows given as consecutive blocks, holding the matrix once (no full copy)."""

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Keep only rows where ``mask`` is true, in order."""

    def vectors(self) -> F32:
        """The float32 matrix (n, dim): a view valid until the next add/keep (faiss-sq8: rebuilt)."""

    def rows(self, index: NDArray[np.int64]) -> F32:
        """The float32 rows ``index`` (a copy)."""

    def top(self, probe: F32, m: int) -> tuple[F64, NDArray[np.int64]]:
        """The ``m`` best rows by exact inner product, best first, equal scores in row order:
        (float64 scores from ``edge.numeric.dot_rows``, rows). The same on every CPU."""


class NumpyBackend:
    """Exact inner products with one BLAS matrix-vector product on one thread; grows in place.

    The matrix is stored transposed, ``dim x capacity`` (one column per template), and searched
    as ``probe @ M[:, :n]``. For row-major numpy this is OpenBLAS's ``gemv_n`` kernel, which
    streams the matrix once and accumulates into the score vector; the ``n x dim`` layout runs
    ``gemv_t`` (one dot product per row), measured about 2x slower at 100k x 128 on the
    development machine (see docs/gallery.md). ``np.matmul`` takes the strided ``[:, :n]`` view
    as is; ``np.dot`` would copy it.
    """

    name = "numpy"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._buf = np.empty((dim, 0), dtype=np.float32)  # column j is template row j
        self._n = 0
        self._scores = np.empty(0, dtype=np.float32)

    def __len__(self) -> int:
        return self._n

    def _reserve(self, cap: int) -> None:
        if cap > self._buf.shape[1]:
            buf = np.empty((self.dim, cap), dtype=np.float32)
            buf[:, : self._n] = self._buf[:, : self._n]
            self._buf = buf

    def add(self, vectors: F32) -> None:
        need = self._n + len(vectors)
        if need > self._buf.shape[1]:
            self._reserve(need if self._n == 0 else max(need, int(self._buf.shape[1] * 1.25) + 64))
        self._buf[:, self._n : need] = vectors.T
        self._n = need

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = self._n
        self._reserve(start + n)  # exactly: a loaded gallery holds no spare columns
        _fill(self._buf[:, start : start + n].T, chunks)
        self._n = start + n

    def keep(self, mask: NDArray[np.bool_]) -> None:
        kept = self._buf[:, : self._n][:, mask]
        self._n = kept.shape[1]
        self._buf[:, : self._n] = kept

    def vectors(self) -> F32:
        view: F32 = self._buf[:, : self._n].T  # (n, dim), column-major: gather rows sparingly
        return view

    def rows(self, index: NDArray[np.int64]) -> F32:
        picked: F32 = self._buf[:, index].T.copy()
        return picked

    def scores(self, probe: F32) -> F32:
        """All rows' scores in a reused buffer (overwritten by the next call)."""
        if len(self._scores) != self._n:
            self._scores = np.empty(self._n, dtype=np.float32)
        q = np.asarray(probe, dtype=np.float32)  # a float64 probe would make numpy copy the matrix
        with one_blas_thread():
            np.matmul(q, self._buf[:, : self._n], out=self._scores)
        return self._scores

    def top(self, probe: F32, m: int) -> tuple[F64, NDArray[np.int64]]:
        m = min(m, self._n)
        if m <= 0:
            return np.empty(0, np.float64), np.empty(0, np.int64)
        scores = self.scores(probe)
        return _exact_top(self, probe, _band_rows(scores, m, blas_bound(self.dim)), m)


class _Rows:
    """A growable row-major matrix ``(n, dim)`` (faiss-sq8 keeps its int8 re-scoring rows in one)."""

    def __init__(self, dim: int, dtype: type[np.generic] = np.float32) -> None:
        self.dim = dim
        self.dtype = dtype
        self._buf: NDArray[Any] = np.empty((0, dim), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def _reserve(self, cap: int) -> None:
        if cap > len(self._buf):
            buf = np.empty((cap, self.dim), dtype=self.dtype)
            buf[: self._n] = self._buf[: self._n]
            self._buf = buf

    def add(self, vectors: F32) -> None:
        need = self._n + len(vectors)
        if need > len(self._buf):
            self._reserve(need if self._n == 0 else max(need, int(len(self._buf) * 1.25) + 64))
        self._buf[self._n : need] = vectors
        self._n = need

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = self._n
        self._reserve(start + n)
        _fill(self._buf[start : start + n], chunks)
        self._n = start + n

    def keep(self, mask: NDArray[np.bool_]) -> None:
        kept = self._buf[: self._n][mask]
        self._n = len(kept)
        self._buf[: self._n] = kept

    def vectors(self) -> NDArray[Any]:
        return self._buf[: self._n]


@functools.cache
def _blas_threads_setter() -> Callable[[int], int] | None:
    """``openblas_set_num_threads_local`` of the BLAS numpy was built with (OpenBLAS >= 0.3.27,
    as numpy's own wheels ship), found through numpy's extension module; None for other BLAS."""
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            module = importlib.import_module(name)
            fn = ctypes.CDLL(module.__file__).openblas_set_num_threads_local
        except (ImportError, OSError, AttributeError, TypeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        setter: Callable[[int], int] = fn
        return setter
    log.debug("numpy's BLAS offers no openblas_set_num_threads_local; the numpy backend uses its default threads")
    return None


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_saved = 0


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS calls inside on one thread, then restore the previous thread count.

    One probe's matrix-vector product is memory-bound: on the 2-core development machine a second
    OpenBLAS thread saved about 17% at 100k while another job kept one core busy, cost about as
    much once both were busy, and its worker spins after each call, taking CPU from the rest of
    the agent. Despite its name, OpenBLAS
    0.3.31 applies the count process-wide (measured), so nested and concurrent users share one
    saved value under a lock and the last one out restores it."""
    global _blas_depth, _blas_saved  # noqa: PLW0603 - one process-wide BLAS setting
    setter = _blas_threads_setter()
    if setter is None:
        yield
        return
    with _blas_lock:
        if _blas_depth == 0:
            _blas_saved = setter(1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                setter(_blas_saved)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise StorageError(
            "gallery backend needs faiss-cpu, which is not installed",
            hint="pip install 'gate-edge[faiss]', or set [gallery] backend = \"numpy\"",
        ) from None
    faiss.omp_set_num_threads(1)  # one probe at a time: one thread is fastest (see module doc)
    return faiss


class FaissFlatBackend:
    """Exact search with faiss ``IndexFlatIP``; the float matrix lives only inside FAISS."""

    name = "faiss"

    def __init__(self, dim: int) -> None:
        self._faiss = _faiss()
        self.dim = dim
        self.index = self._faiss.IndexFlatIP(dim)
        self._n = 0  # ntotal, kept here: a SWIG attribute read costs microseconds per probe

    def __len__(self) -> int:
        return self._n

    def add(self, vectors: F32) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self._n = int(self.index.ntotal)

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = len(self)
        # np.zeros is calloc'd: FAISS reads untouched zero pages, so only its own storage becomes
        # resident; the rows are then written in place through the view
        self.index.add(np.zeros((n, self.dim), dtype=np.float32))
        self._n = int(self.index.ntotal)
        _fill(self.vectors()[start:], chunks)

    def keep(self, mask: NDArray[np.bool_]) -> None:
        drop = np.flatnonzero(~mask).astype(np.int64)
        if len(drop):
            self.index.remove_ids(self._faiss.IDSelectorBatch(drop))
            self._n = int(self.index.ntotal)

    def vectors(self) -> F32:
        n = len(self)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        flat = self._faiss.rev_swig_ptr(self.index.get_xb(), n * self.dim)
        return np.asarray(flat).reshape(n, self.dim)

    def rows(self, index: NDArray[np.int64]) -> F32:
        picked: F32 = self.vectors()[index]
        return picked

    def top(self, probe: F32, m: int) -> tuple[F64, NDArray[np.int64]]:
        m = min(m, len(self))
        if m <= 0:
            return np.empty(0, np.float64), np.empty(0, np.int64)
        # FAISS's scores depend on its SIMD level and its heap keeps no order among equal scores:
        # ask for more rows while the last one returned still lies within the band below the m-th,
        # then re-score the band exactly
        n, k, band = len(self), m + 1, 2 * blas_bound(self.dim)
        while True:
            found, cand = self.index.search(probe.reshape(1, -1), min(k, n))
            scores, rows = found[0], cand[0].astype(np.int64)
            if len(rows) == n or scores[-1] < scores[m - 1] - band:
                break
            k *= 4
        return _exact_top(self, probe, rows[scores >= scores[m - 1] - band], m)


class FaissSQ8Backend:
    """8-bit codes shortlist; the shortlist is re-scored from a three-level int8 copy of each row.

    FAISS keeps each row's 8-bit code (``x * 254`` quantised to int8, signed direct) and scans
    them. Beside it the backend keeps ``(n, 3 * dim)`` int8 ``[c1 | c2 | c3]`` with
    ``x = (c1 + c2 / 254 + c3 / 254**2) / 127`` to within 6.1e-8 per component: float32 rounding
    (the float path's own error), at 0.75x the memory of a float32 matrix (1.0x with the codes).

    Why this layout: the scan streams every code through the caches and evicts the interpreter's
    and numpy's working set, so each numpy call after it costs ~10-40 us instead of ~1-5. With all
    three levels in one row, re-scoring the shortlist is one gather and one int8 x float32 product
    against ``[q / 127 | q / (127 * 254) | q / (127 * 254**2)]``, prepared before the scan.
    (Code + float16 residual held 0.75x in all but took ten calls after the scan: the gallery was
    +12% over the raw SQ8 search at 100k, and is +6.5-7.1% now; benchmarks/bench_sq8_rescore.py.)
    """

    name = "faiss-sq8"
    #: FAISS's codes are x * SCALE quantised to int8; embeddings' components stay well inside +-127/SCALE
    SCALE = 254.0
    #: the re-scoring levels: x = (c1 + c2 / STEP + c3 / STEP**2) / FINE_SCALE, every c in [-127, 127]
    FINE_SCALE = 127.0
    STEP = 254.0
    #: rows re-scored per probe, at least
    SHORTLIST = 32

    def __init__(self, dim: int) -> None:
        self._faiss = _faiss()
        self.dim = dim
        self._fine = _Rows(3 * dim, np.int8)  # row-major: a shortlisted row gathers as 6 cache lines
        qtype = self._faiss.ScalarQuantizer.QT_8bit_direct_signed
        self.index = self._faiss.IndexScalarQuantizer(dim, qtype, self._faiss.METRIC_INNER_PRODUCT)
        self.index.train(np.zeros((1, dim), dtype=np.float32))  # direct codes: training only sets up
        # Per-probe scratch, filled by one multiply (callers serialise searches; the Gallery holds
        # its lock): row 0 the probe at the codes' scale for FAISS, rows 1-3 the levels' weights.
        self._probe_scales = np.array(
            [[self.SCALE]] + [[1.0 / (self.FINE_SCALE * self.STEP**level)] for level in range(3)], dtype=np.float32
        )
        self._scratch = np.empty((4, dim), dtype=np.float32)
        self._query = self._scratch[:1]
        self._weights = self._scratch[1:].reshape(-1)

    def __len__(self) -> int:
        return len(self._fine)

    def _encode(self, vectors: F32) -> tuple[NDArray[np.uint8], NDArray[np.int8]]:
        """FAISS's codes and the three-level copy of unit-length rows (float64 arithmetic: every
        step is exact, so add and add_from build the same bytes)."""
        if len(vectors) and float(np.max(np.abs(vectors))) > 1.0 + 1e-6:
            raise StorageError("faiss-sq8 holds unit-length templates; a component exceeds 1")
        codes = self.index.sa_encode(np.clip(vectors * self.SCALE, -127.0, 127.0).astype(np.float32))
        fine = np.empty((len(vectors), 3, self.dim), dtype=np.int8)
        rest = vectors.astype(np.float64)
        rest *= self.FINE_SCALE
        level = np.empty_like(rest)  # in place throughout: a load's peak RSS counts every temporary
        for at in range(3):
            np.clip(np.rint(rest, out=level), -127, 127, out=level)
            fine[:, at] = level
            rest -= level
            rest *= self.STEP
        return codes, fine.reshape(len(vectors), 3 * self.dim)

    def add(self, vectors: F32) -> None:
        if len(vectors):
            codes, fine = self._encode(np.ascontiguousarray(vectors, dtype=np.float32))
            self.index.add_sa_codes(codes)
            self._fine.add(fine)  # type: ignore[arg-type]

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = len(self)
        # calloc'd zeros (see FaissFlatBackend.add_from) reserve the codes; each chunk is then
        # encoded in place and only its int8 levels kept: the float32 matrix is never held whole
        self.index.add(np.zeros((n, self.dim), dtype=np.float32))
        codes = np.asarray(self._faiss.rev_swig_ptr(self.index.codes.data(), (start + n) * self.dim))
        codes = codes.reshape(start + n, self.dim)
        at = start

        def levels() -> Iterator[F32]:
            nonlocal at
            for chunk in chunks:
                c, fine = self._encode(np.ascontiguousarray(chunk, dtype=np.float32))
                codes[at : at + len(c)] = c
                at += len(c)
                yield fine  # type: ignore[misc]

        self._fine.add_from(n, levels())

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._fine.keep(mask)
        drop = np.flatnonzero(~mask).astype(np.int64)
        if len(drop):
            self.index.remove_ids(self._faiss.IDSelectorBatch(drop))

    def rows(self, index: NDArray[np.int64]) -> F32:
        """Rows rebuilt in float64 and rounded once to float32, in blocks (bounded scratch)."""
        out = np.empty((len(index), self.dim), dtype=np.float32)
        fine = self._fine.vectors()
        for start in range(0, len(index), 4096):
            part = fine[index[start : start + 4096]].reshape(-1, 3, self.dim).astype(np.float64)
            part[:, 1] += part[:, 2] * (1.0 / self.STEP)
            part[:, 0] += part[:, 1] * (1.0 / self.STEP)  # c1 + (c2 + c3 / STEP) / STEP
            out[start : start + 4096] = part[:, 0] * (1.0 / self.FINE_SCALE)
        return out

    def vectors(self) -> F32:
        return self.rows(np.arange(len(self), dtype=np.int64))

    def fine_bound(self) -> float:
        """How far the int8 x float32 re-score can lie from the exact score of ``rows()``.

        The product sums 3 * dim float32 terms whose magnitudes add up to at most
        sum |x_i q_i| + 0.0079 sum |q_i| <= 1 + 0.0079 sqrt(dim) (c1 rounds 127 x, |c2|, |c3| <= 127),
        the weights carry one rounding each, and ``rows()`` rounds each component once more."""
        terms = 3 * self.dim + 2
        gamma = terms * U32 / (1.0 - terms * U32)
        return float((gamma * (1.0 + 0.0079 * self.dim**0.5) + 2 * U32) * 1.01)

    def top(self, probe: F32, m: int) -> tuple[F64, NDArray[np.int64]]:
        n = len(self)
        m = min(m, n)
        if m <= 0:
            return np.empty(0, np.float64), np.empty(0, np.int64)
        short = min(n, max(self.SHORTLIST, 4 * m))
        # the byte distance computer truncates the probe to integers, so it takes the codes' scale
        np.multiply(self._probe_scales, probe, out=self._scratch)
        # its scores are integers (exact on every CPU), but its heap keeps no order among equal
        # ones: rows tying the last place are all taken, so the shortlist is the same everywhere
        k = short + 1
        while True:
            found, cand = self.index.search(self._query, min(k, n))
            if len(cand[0]) == n or found[0, -1] < found[0, short - 1]:
                break
            k *= 4
        rows = cand[0][found[0] >= found[0, short - 1]]
        # After the scan as few numpy calls as possible (see the class note). Every row asked for
        # exists, so FAISS fills every slot (no -1); rows < n index the buffer without a slice.
        fine: F32 = np.matmul(self._fine._buf[rows], self._weights)
        band = 2 * self.fine_bound()
        if m == 1:
            keep = rows[fine >= fine.max() - band]
        else:
            keep = rows[fine >= np.partition(fine, len(fine) - m)[len(fine) - m] - band]
        return _exact_top(self, probe, keep.astype(np.int64), m)


def _band_rows(scores: F32, m: int, bound: float) -> NDArray[np.int64]:
    """Every row whose fast score could, within ``bound`` of error on each score, be among the
    ``m`` best exactly: at least the m-th best fast score minus twice the bound."""
    if m == 1:
        cut = float(scores[int(np.argmax(scores))])
    else:
        cut = float(scores[np.argpartition(scores, len(scores) - m)[len(scores) - m]])
    return np.flatnonzero(scores >= cut - 2 * bound).astype(np.int64)


def _exact_top(backend: SearchBackend, probe: F32, rows: NDArray[np.int64], m: int) -> tuple[F64, NDArray[np.int64]]:
    """The ``m`` best of ``rows`` by exact score, equal scores in row order (whatever the CPU)."""
    exact = dot_rows(backend.rows(rows), probe)
    order = np.lexsort((rows, -exact))[:m]
    return exact[order], rows[order]


def best_subjects(
    backend: SearchBackend,
    probe: F32,
    owners: NDArray[np.integer],
    k: int,
    per_owner: int,
) -> list[tuple[int, float]]:
    """The ``k`` best owners of rows (an owner's score is its best row's exact score), best first;
    equal scores go to the owner of the lower row. ``owners[row]`` owns ``row``; an owner has at
    most ``per_owner`` rows. The same answer on every CPU and from every exact backend.
    """
    n = len(backend)
    if n == 0 or k < 1:
        return []
    if isinstance(backend, NumpyBackend):
        # One product, then argmax passes over the scratch buffer, masking only the rows taken:
        # a subject has at most per_owner rows, so finding k distinct owners costs at most
        # k * per_owner cheap passes and no O(n) mask. Once k owners are found (the k-th at fast
        # score s), every row above s - 2 * bound is taken too: any row among the exact best
        # lies there. Those few are re-scored exactly.
        scores = backend.scores(probe)
        band = 2 * blas_bound(backend.dim)
        taken: list[int] = []
        seen: set[int] = set()
        floor = -np.inf
        while len(taken) < n:
            row = int(np.argmax(scores))
            fast = float(scores[row])
            if fast < floor:
                break
            scores[row] = -np.inf
            taken.append(row)
            owner = int(owners[row])
            if owner not in seen:
                seen.add(owner)
                if len(seen) == k:
                    floor = fast - band
        exact_scores, rows = _exact_top(backend, probe, np.array(taken, dtype=np.int64), len(taken))
    else:
        exact_scores, rows = backend.top(probe, (k - 1) * per_owner + 1)  # holds k distinct owners
    found: list[tuple[int, float]] = []
    chosen: set[int] = set()
    for score, row in zip(exact_scores.tolist(), rows.tolist(), strict=True):
        owner = int(owners[row])
        if owner not in chosen:  # rows come best first, equal scores in row order
            chosen.add(owner)
            found.append((owner, float(score)))
            if len(found) == k:
                break
    return found


def _fill(target: F32, chunks: Iterable[F32]) -> None:
    at = 0
    for chunk in chunks:
        target[at : at + len(chunk)] = chunk
        at += len(chunk)
    if at != len(target):
        raise StorageError(f"gallery load expected {len(target)} templates, read {at}")


def make_backend(name: str, dim: int) -> NumpyBackend | FaissFlatBackend | FaissSQ8Backend:
    if name == "numpy":
        return NumpyBackend(dim)
    if name == "faiss":
        return FaissFlatBackend(dim)
    if name == "faiss-sq8":
        return FaissSQ8Backend(dim)
    raise StorageError(f"unknown gallery backend {name!r}", hint=f"use one of {', '.join(BACKENDS)}")
