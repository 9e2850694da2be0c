"""1:N search backends over the protected template matrix, behind one small interface.

- ``numpy`` (default; no extra dependency): ``X @ q`` over one contiguous float32 matrix.
- ``faiss``: faiss-cpu ``IndexFlatIP`` (exact). The gallery's float view is FAISS's own storage,
  so the matrix is held once.
- ``faiss-sq8``: FAISS's 8-bit scalar quantiser (signed direct codes, a quarter of the memory
  traffic of float32) shortlists candidates, which are then re-scored exactly in float32: scores,
  and so decisions, are those of the float path whenever the true best rows make the shortlist.

Rows keep their order when rows are removed, so the caller's row -> subject map can be compacted
with the same mask. FAISS runs a single probe fastest on one OpenMP thread; its backends set that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
        """The float32 matrix (n, dim), a view valid until the next add/keep."""

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        """The ``m`` best rows by inner product, best first: (scores, rows)."""


class NumpyBackend:
    """Exact inner products with one BLAS matrix-vector product; grows in place."""

    name = "numpy"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._buf = np.empty((0, dim), dtype=np.float32)
        self._n = 0
        self._scores = np.empty(0, dtype=np.float32)

    def __len__(self) -> int:
        return self._n

    def add(self, vectors: F32) -> None:
        need = self._n + len(vectors)
        if need > len(self._buf):
            cap = need if self._n == 0 else max(need, int(len(self._buf) * 1.25) + 64)
            buf = np.empty((cap, self.dim), dtype=np.float32)
            buf[: self._n] = self._buf[: self._n]
            self._buf = buf
        self._buf[self._n : need] = vectors
        self._n = need

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = self._n
        if start + n > len(self._buf):
            buf = np.empty((start + n, self.dim), dtype=np.float32)
            buf[:start] = self._buf[:start]
            self._buf = buf
        _fill(self._buf[start : start + n], chunks)
        self._n = start + n

    def keep(self, mask: NDArray[np.bool_]) -> None:
        kept = self._buf[: self._n][mask]
        self._n = len(kept)
        self._buf[: self._n] = kept

    def vectors(self) -> F32:
        return self._buf[: self._n]

    def scores(self, probe: F32) -> F32:
        """All rows' scores in a reused buffer (overwritten by the next call)."""
        if len(self._scores) != self._n:
            self._scores = np.empty(self._n, dtype=np.float32)
        return np.dot(self._buf[: self._n], probe, out=self._scores)

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

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        m = min(m, len(self))
        if m <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, rows = self.index.search(probe.reshape(1, -1), m)
        return scores[0], rows[0].astype(np.int64)


class FaissSQ8Backend:
    """8-bit codes shortlist, float32 re-scores: a quarter of the bytes read per probe."""

    name = "faiss-sq8"
    #: codes are round(x * SCALE) in int8; unit vectors' components stay well inside +-127/SCALE
    SCALE = 254.0
    #: rows re-scored exactly per probe, at least
    SHORTLIST = 32

    def __init__(self, dim: int) -> None:
        self._faiss = _faiss()
        self.dim = dim
        self._floats = NumpyBackend(dim)
        qtype = self._faiss.ScalarQuantizer.QT_8bit_direct_signed
        self.index = self._faiss.IndexScalarQuantizer(dim, qtype, self._faiss.METRIC_INNER_PRODUCT)
        self.index.train(np.zeros((1, dim), dtype=np.float32))  # direct codes: training only sets up

    def __len__(self) -> int:
        return len(self._floats)

    def add(self, vectors: F32) -> None:
        if len(vectors):
            self._floats.add(vectors)
            self.index.add(self._scaled(vectors))

    def add_from(self, n: int, chunks: Iterable[F32]) -> None:
        start = len(self)
        self._floats.add_from(n, chunks)
        self.index.add(np.zeros((n, self.dim), dtype=np.float32))  # see FaissFlatBackend.add_from
        codes = np.asarray(self._faiss.rev_swig_ptr(self.index.codes.data(), len(self) * self.dim))
        codes = codes.reshape(len(self), self.dim)
        floats = self._floats.vectors()
        for i in range(start, len(self), 16384):
            codes[i : i + 16384] = self.index.sa_encode(self._scaled(floats[i : i + 16384]))

    def _scaled(self, vectors: F32) -> F32:
        scaled: F32 = np.clip(vectors * self.SCALE, -127.0, 127.0).astype(np.float32)
        return scaled

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._floats.keep(mask)
        drop = np.flatnonzero(~mask).astype(np.int64)
        if len(drop):
            self.index.remove_ids(self._faiss.IDSelectorBatch(drop))

    def vectors(self) -> F32:
        return self._floats.vectors()

    def top(self, probe: F32, m: int) -> tuple[F32, NDArray[np.int64]]:
        n = len(self)
        m = min(m, n)
        if m <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        short = min(n, max(self.SHORTLIST, 4 * m))
        # the byte distance computer quantises the probe too, so it takes the same scale
        _, cand = self.index.search((probe * self.SCALE).reshape(1, -1).astype(np.float32), short)
        rows = cand[0][cand[0] >= 0]
        exact = self._floats.vectors()[rows] @ probe
        order = np.argsort(-exact, kind="stable")[:m]
        return exact[order].astype(np.float32), rows[order].astype(np.int64)


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
