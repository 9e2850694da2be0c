"""1:N search backends over the protected template matrix, behind one small interface.

- ``numpy`` (default; no extra dependency): one BLAS matrix-vector product on one thread over the
  float32 matrix stored transposed (``dim x n``), which OpenBLAS streams fastest.
- ``faiss``: faiss-cpu ``IndexFlatIP`` (exact). The gallery's float view is FAISS's own storage,
  so the matrix is held once.
- ``faiss-sq8``: FAISS's 8-bit scalar quantiser (signed direct codes, a quarter of the memory
  traffic of float32) shortlists candidates, which are then re-scored exactly in float32: scores,
  and so decisions, are those of the float path whenever the true best rows make the shortlist.

Rows keep their order when rows are removed, so the caller's row -> subject map can be compacted
with the same mask. FAISS runs a single probe fastest on one OpenMP thread; its backends set that.
The numpy backend holds OpenBLAS to one thread for the product only (``one_blas_thread``).
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

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
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

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        """The ``m`` best rows by inner product, best first: (scores, rows)."""


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

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        scores = self.scores(probe)
        m = min(m, self._n)
        if m <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        if m == 1:
            rows = np.array([int(np.argmax(scores))], dtype=np.int64)
        else:
            part = np.argpartition(scores, -m)[-m:]
            rows = part[np.argsort(-scores[part], kind="stable")].astype(np.int64)
        return scores[rows].copy(), rows


class _Rows:
    """A growable row-major matrix ``(n, dim)`` (faiss-sq8 keeps its float16 residuals in one)."""

    def __init__(self, dim: int, dtype: type[np.floating[Any]] = np.float32) -> None:
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

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        m = min(m, len(self))
        if m <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, rows = self.index.search(probe.reshape(1, -1), m)
        return scores[0], rows[0].astype(np.int64)


class FaissSQ8Backend:
    """8-bit codes shortlist, re-scored from codes plus a float16 residual.

    A row is stored as its 8-bit code (inside FAISS, which searches the codes) and the float16
    residual ``x - code / SCALE``. The residual is below 1/SCALE in magnitude, where float16 steps
    are 3.8e-6, so a re-scored row is float32 to within 1.9e-6 per component (a score to about
    1e-7 typically, like a change of summation order) while the memory is 0.75x the float32
    matrix instead of the 1.25x of codes plus a float32 copy.
    """

    name = "faiss-sq8"
    #: codes are round(x * SCALE) in int8; unit vectors' components stay well inside +-127/SCALE
    SCALE = 254.0
    #: rows re-scored per probe, at least
    SHORTLIST = 32

    def __init__(self, dim: int) -> None:
        self._faiss = _faiss()
        self.dim = dim
        self._resid = _Rows(dim, np.float16)  # row-major: the shortlisted rows gather as whole cache lines
        qtype = self._faiss.ScalarQuantizer.QT_8bit_direct_signed
        self.index = self._faiss.IndexScalarQuantizer(dim, qtype, self._faiss.METRIC_INNER_PRODUCT)
        self.index.train(np.zeros((1, dim), dtype=np.float32))  # direct codes: training only sets up
        self._refresh()

    def __len__(self) -> int:
        return len(self._resid)

    def _refresh(self) -> None:
        """Re-point the view of FAISS's code array (it moves when the index grows or shrinks)."""
        n = int(self.index.ntotal)
        if n == 0:
            self._code_view: NDArray[np.uint8] = np.empty((0, self.dim), dtype=np.uint8)
        else:
            codes = np.asarray(self._faiss.rev_swig_ptr(self.index.codes.data(), n * self.dim))
            self._code_view = codes.reshape(n, self.dim)

    def _decode(self, codes: NDArray[np.uint8]) -> F32:
        """Codes back to floats in numpy (FAISS's direct signed codes are value + 128; a test holds
        this to ``sa_decode``): cheaper than a SWIG call for a 32-row shortlist."""
        approx: F32 = codes.astype(np.float32)
        approx -= np.float32(128.0)
        approx *= np.float32(1.0 / self.SCALE)
        return approx

    def _encode(self, vectors: F32) -> tuple[NDArray[np.uint8], NDArray[np.float16]]:
        codes = self.index.sa_encode(self._scaled(vectors))
        return codes, (vectors - self._decode(codes)).astype(np.float16)

    def add(self, vectors: F32) -> None:
        if len(vectors):
            codes, resid = self._encode(np.ascontiguousarray(vectors, dtype=np.float32))
            self.index.add_sa_codes(codes)
            self._resid.add(resid)  # type: ignore[arg-type]
            self._refresh()

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = len(self)
        # calloc'd zeros (see FaissFlatBackend.add_from) reserve the codes; each chunk is then
        # encoded in place and only its residual kept: the float32 matrix is never held whole
        self.index.add(np.zeros((n, self.dim), dtype=np.float32))
        codes = np.asarray(self._faiss.rev_swig_ptr(self.index.codes.data(), (start + n) * self.dim))
        codes = codes.reshape(start + n, self.dim)
        at = start

        def residuals() -> Iterator[F32]:
            nonlocal at
            for chunk in chunks:
                c, r = self._encode(np.ascontiguousarray(chunk, dtype=np.float32))
                codes[at : at + len(c)] = c
                at += len(c)
                yield r  # type: ignore[misc]

        self._resid.add_from(n, residuals())
        self._refresh()

    def _scaled(self, vectors: F32) -> F32:
        scaled: F32 = np.clip(vectors * self.SCALE, -127.0, 127.0).astype(np.float32)
        return scaled

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._resid.keep(mask)
        drop = np.flatnonzero(~mask).astype(np.int64)
        if len(drop):
            self.index.remove_ids(self._faiss.IDSelectorBatch(drop))
        self._refresh()

    def rows(self, index: NDArray[np.int64]) -> F32:
        picked = self._decode(self._code_view[index])
        picked += self._resid.vectors()[index]
        return picked

    def vectors(self) -> F32:
        return self.rows(np.arange(len(self), dtype=np.int64))

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        n = len(self)
        m = min(m, n)
        if m <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        short = min(n, max(self.SHORTLIST, 4 * m))
        # the byte distance computer quantises the probe too, so it takes the same scale
        _, cand = self.index.search((probe * self.SCALE).reshape(1, -1).astype(np.float32), short)
        rows = cand[0][cand[0] >= 0].astype(np.int64)
        exact = self.rows(rows) @ probe
        order = np.argsort(-exact, kind="stable")[:m]
        return exact[order].astype(np.float32), rows[order]


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
