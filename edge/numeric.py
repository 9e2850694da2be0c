"""Arithmetic whose result is the same on every CPU: fixed-order sums and certified rounding.

BLAS libraries (OpenBLAS under numpy, FAISS) choose their kernels by CPU (SSE, AVX2, AVX-512,
NEON) and by thread count, and each kernel adds in its own order, so a float32 inner product can
differ in its last bits from one machine to the next. Where a result decides something (a gallery
score against a threshold, which of two subjects is better, the protected probe, the protection
matrix itself), it is computed here instead, from three facts:

- a product of two float32 values is exact in float64 (24 + 24 significant bits < 53);
- :func:`fixed_sum` adds in a fixed pairwise tree made only of elementwise additions, which
  IEEE 754 rounds the same way on every machine (no reduction kernel of any library, no fused
  multiply-add, no thread split can enter), so the float64 result is bit-identical everywhere;
- :func:`blas_bound` bounds how far *any* float32 summation (any order, blocking, FMA) of the
  inner product of two unit vectors can lie from the exact value, so BLAS may still do the heavy
  work of shortlisting as long as everything within twice that bound of the cut is re-scored here.

:class:`Product32` uses the same idea for float32 matrix products: BLAS in float64, and every entry whose
float32 rounding the float64 error could change is recomputed with :func:`fixed_sum`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

#: unit roundoff of float32 and float64
U32 = 2.0**-24
U64 = 2.0**-53


def fixed_sum(values: NDArray[np.floating], axis: int = -1) -> F64:
    """Sum along ``axis`` in float64 in one fixed pairwise order, identical on every IEEE machine.

    The axis is zero-padded to a power of two and halved by elementwise additions (adding 0.0 is
    exact). Error at most ``ceil(log2 n)`` roundings of the sum of magnitudes.
    """
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = x.shape[0]
    if n == 0:
        return np.zeros(x.shape[1:], dtype=np.float64)
    width = 1 << (n - 1).bit_length()
    if width != n:
        x = np.concatenate([x, np.zeros((width - n, *x.shape[1:]), dtype=np.float64)])
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        x = x[:half] + x[half:]
    out: F64 = x[0]
    return out


def dot_rows(rows: NDArray[np.floating], probe: NDArray[np.floating]) -> F64:
    """Inner products of each row with ``probe``: exact products (for float32 inputs), fixed-order
    float64 sum. Bit-identical on every CPU, within ``ceil(log2 dim)`` float64 roundings of exact."""
    r = np.asarray(rows, dtype=np.float64)
    q = np.asarray(probe, dtype=np.float64)
    return fixed_sum(r * q, axis=-1)


def norm(vector: NDArray[np.floating]) -> float:
    """Euclidean norm with a fixed-order sum (``math.sqrt`` is correctly rounded by IEEE 754)."""
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    return math.sqrt(float(fixed_sum(v * v)))


def blas_bound(dim: int) -> float:
    """How far a float32 inner product of two vectors of norm <= 1 + 1e-6, summed in any order
    (any blocking, SIMD width, thread split or FMA), can lie from the exact value.

    gamma_n = n u / (1 - n u) times sum |x_i q_i| <= |x| |q| (Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., eq. 3.5; the bound holds for every evaluation order). For
    ``dim`` 128 this is 7.6e-6.
    """
    nu = dim * U32
    return nu / (1.0 - nu) * (1.0 + 1e-5)


class Product32:
    """``a @ b`` rounded to float32 for a fixed ``b``, the same bits on every CPU and thread count.

    The reference value of each entry is ``float32(fixed_sum(exact products))``. BLAS computes the
    product in float64; an entry whose float32 rounding is the same at both ends of the float64
    error interval is that reference value (rounding is monotone), and the rare entry whose
    interval straddles a float32 rounding boundary (about 1 in 10^7) is recomputed with
    :func:`fixed_sum`. Operands are float32, so every product is exact in float64.
    """

    __slots__ = ("_b", "_bt", "_err", "_split", "block")

    def __init__(self, b: NDArray[np.floating], block: int = 4096) -> None:
        b32 = np.asarray(b, dtype=np.float32)
        if b32.ndim != 2:
            raise ValueError(f"Product32 takes a matrix, got shape {b32.shape}")
        self._b = b32.astype(np.float64)
        self._bt = np.ascontiguousarray(self._b.T)
        k = self._b.shape[0]
        # |y - reference| <= |y - exact| + |fixed_sum - exact| <= (gamma_k + ceil(log2 k) u) sum |a_i b_i|
        # <= that factor times |a| |b_col| (Cauchy-Schwarz); 4 more u cover rounding y +- err, and
        # 1.01 the rounding of the norms
        grow = (k + (k - 1).bit_length() + 6) * U64 * 1.01
        self._err = np.sqrt(fixed_sum(self._b * self._b, axis=0)) * grow  # per column, times |a|
        # one probe: output rows in blocks under OpenBLAS's threading threshold (m * n < 9216), so
        # the product runs on the calling thread and wakes no workers that would then spin
        self._split = max(1, 8192 // max(1, k))
        self.block = block  # rows per BLAS call in a batch: bounds the scratch memory

    def __call__(self, a: NDArray[np.floating]) -> F32:
        """``a`` (dim,) or (n, dim) times the matrix, as float32."""
        a32: F32 = np.asarray(a, dtype=np.float32)
        if a32.ndim == 1:
            return self._one(a32)
        out = np.empty((a32.shape[0], self._b.shape[1]), dtype=np.float32)
        for start in range(0, a32.shape[0], self.block):
            part = a32[start : start + self.block].astype(np.float64)
            y = part @ self._b
            err = np.multiply.outer(np.sqrt(np.einsum("ij,ij->i", part, part)) * 1.01, self._err)
            hi = (y + err).astype(np.float32)
            y -= err
            for i, j in np.argwhere(y.astype(np.float32) != hi).tolist():
                hi[i, j] = np.float32(fixed_sum(part[i] * self._b[:, j]))
            out[start : start + len(part)] = hi
        return out

    def _one(self, a32: F32) -> F32:
        v = a32.astype(np.float64)
        y = np.empty(self._b.shape[1], dtype=np.float64)
        for start in range(0, len(y), self._split):
            np.dot(self._bt[start : start + self._split], v, out=y[start : start + self._split])
        err = self._err * (math.sqrt(float(v @ v)) * 1.01)
        hi: F32 = (y + err).astype(np.float32)
        y -= err
        lo = y.astype(np.float32)
        if not np.array_equal(lo, hi):
            for j in np.flatnonzero(lo != hi).tolist():
                hi[j] = np.float32(fixed_sum(v * self._b[:, j]))
        return hi


def orthonormal_columns(m: F64) -> F64:
    """The Q of ``m = QR`` with a positive diagonal of R, computed the same way on every CPU.

    Classical Gram-Schmidt applied twice per column (orthogonal to float64 precision for any full
    rank ``m``), with every inner product and every combination summed by :func:`fixed_sum`.
    LAPACK's QR (``numpy.linalg.qr``) gives the same matrix to within float64 rounding, but its
    last bits depend on the BLAS kernel (measured: OpenBLAS's Haswell, SkylakeX and Sandybridge
    kernels give three different float64 Q for one input).
    """
    a = np.asarray(m, dtype=np.float64)
    n, cols = a.shape
    q = np.zeros((n, cols), dtype=np.float64)
    for j in range(cols):
        v = a[:, j].copy()
        if j:
            basis = q[:, :j]
            for _ in range(2):
                h = fixed_sum(basis * v[:, None], axis=0)  # (j,) inner products with earlier columns
                v = v - fixed_sum(basis * h[None, :], axis=1)
        length = norm(v)
        if not length > 0.0:
            raise ValueError("matrix is rank deficient: no orthonormal basis")
        q[:, j] = v / length
    return q
