"""Template protection beyond encryption (ISO/IEC 24745: renewable, unlinkable references).

Every stored template and every probe is multiplied by a secret random orthogonal matrix drawn from
the device's gallery key. An orthogonal map preserves inner products exactly (up to float rounding),
so matching decisions do not change; templates protected under another key look like unrelated
vectors (cross-device scores fall to chance), and re-keying draws a new matrix, renewing every
reference.

Limits, stated plainly: a rotation is linear. Someone holding the key can undo it, and someone
holding many templates from two devices together with matching identities could estimate the map
between them. It is a second layer under the encryption, not a replacement for it.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


class Protector:
    """A secret orthogonal map of ``dim``-dimensional embeddings (Haar-distributed)."""

    __slots__ = ("_block", "dim", "matrix")

    def __init__(self, matrix: F32) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"protection matrix must be square, got shape {matrix.shape}")
        self.dim = int(matrix.shape[0])
        # rows are applied as ``v @ matrix.T``; keep the transpose contiguous for that product
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self._block = max(1, 8192 // self.dim)  # rows x dim under OpenBLAS's threading threshold

    @classmethod
    def from_seed(cls, seed: bytes, dim: int) -> Protector:
        """The map for a 32-byte secret seed: QR of a seeded Gaussian matrix, signs fixed."""
        if len(seed) < 16:
            raise ValueError("protection seed must be at least 16 bytes")
        words = np.frombuffer(hashlib.sha512(b"gate-edge/protect/v1" + seed).digest(), dtype=np.uint64)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) for w in words])))
        gauss = rng.standard_normal((dim, dim))
        q, r = np.linalg.qr(gauss)
        q *= np.sign(np.diag(r))  # makes the distribution uniform over the orthogonal group
        return cls(q.astype(np.float32))

    def apply(self, vectors: F32) -> F32:
        """Protect row vectors (n, dim)."""
        return np.ascontiguousarray(vectors @ self.matrix.T, dtype=np.float32)

    def apply_one(self, vector: F32) -> F32:
        """Protect one probe (dim,).

        Done in row blocks small enough that OpenBLAS runs each on the calling thread: a 128x128
        product would wake its worker threads, which then spin beside the FAISS search that
        follows (measured: +20% per probe on two cores)."""
        out = np.empty(self.dim, dtype=np.float32)
        for start in range(0, self.dim, self._block):
            np.dot(self.matrix[start : start + self._block], vector, out=out[start : start + self._block])
        return out

    def invert(self, vectors: F32) -> F32:
        """Undo :meth:`apply` (used only when re-keying)."""
        return np.ascontiguousarray(vectors @ self.matrix, dtype=np.float32)
