"""edge.numeric: fixed-order sums, the BLAS error bound, certified float32 products, Gram-Schmidt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge import numeric
from edge.numeric import Product32, blas_bound, dot_rows, fixed_sum, norm, orthonormal_columns


def _tree(values: list[float]) -> float:
    """The documented order: pad to a power of two with zeros, add the halves elementwise."""
    width = 1 << max(0, (len(values) - 1).bit_length())
    vals = values + [0.0] * (width - len(values))
    while len(vals) > 1:
        half = len(vals) // 2
        vals = [a + b for a, b in zip(vals[:half], vals[half:], strict=True)]
    return vals[0]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 127, 128, 129, 1000])
def test_fixed_sum_adds_in_the_documented_tree(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n)) * 10.0 ** rng.integers(-8, 8, size=(3, n))
    got = fixed_sum(x, axis=1)
    for row, value in zip(x, got, strict=True):
        assert value == _tree(row.tolist())  # bit for bit: Python floats are IEEE doubles
    assert fixed_sum(x.T, axis=0).tolist() == got.tolist()
    assert fixed_sum(np.zeros((0, 4)), axis=0).tolist() == [0.0] * 4


def test_dot_rows_and_norm_are_exact_products_summed_in_the_tree():
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((20, 128)).astype(np.float32)
    q = rng.standard_normal(128).astype(np.float32)
    got = dot_rows(rows, q)
    for row, value in zip(rows, got, strict=True):
        products = [float(a) * float(b) for a, b in zip(row.tolist(), q.tolist(), strict=True)]
        assert value == _tree(products)
        assert abs(value - math.fsum(products)) <= 8 * 2.0**-53 * sum(abs(p) for p in products)
    assert norm(q) == math.sqrt(_tree([float(v) * float(v) for v in q.tolist()]))


def test_blas_bound_holds_for_the_worst_summation_order():
    # a float32 running sum (np.cumsum is sequential) is the order with the largest error bound;
    # aligned vectors make every partial sum grow, which is where rounding errors add up
    rng = np.random.default_rng(9)
    worst = 0.0
    for _ in range(200):
        x = np.abs(rng.standard_normal(128)).astype(np.float32)
        x /= np.float32(np.linalg.norm(x))
        q = (x + np.float32(0.01) * rng.standard_normal(128).astype(np.float32)).astype(np.float32)
        q /= np.float32(np.linalg.norm(q))
        sequential = float(np.cumsum(x * q, dtype=np.float32)[-1])
        exact = math.fsum(float(a) * float(b) for a, b in zip(x.tolist(), q.tolist(), strict=True))
        worst = max(worst, abs(sequential - exact))
    assert 0 < worst <= blas_bound(128)
    assert blas_bound(128) == pytest.approx(7.63e-6, rel=1e-3)


def test_product32_equals_the_fixed_order_reference_for_one_row_and_many():
    rng = np.random.default_rng(2)
    m = rng.standard_normal((128, 96)).astype(np.float32)
    a = rng.standard_normal((300, 128)).astype(np.float32)
    product = Product32(m, block=64)  # several blocks
    want = np.float32(fixed_sum(a.astype(np.float64)[:, :, None] * m.astype(np.float64)[None], axis=1))
    np.testing.assert_array_equal(product(a), want)
    np.testing.assert_array_equal(product(a[7]), want[7])
    assert product(a).dtype == np.float32
    assert product(np.empty((0, 128), np.float32)).shape == (0, 96)


def test_product32_recomputes_an_entry_on_a_float32_rounding_boundary(monkeypatch):
    # 1 + 2**-24 lies exactly halfway between two float32 values, so an error interval of any
    # width around it straddles the boundary: that entry must come from the fixed-order sum
    calls = []
    real = numeric.fixed_sum

    def counting(values, axis=-1):
        calls.append(np.shape(values))
        return real(values, axis)

    m = np.array([[1.0, 0.5], [2.0**-24, 0.25]], np.float32)
    product = Product32(m)
    monkeypatch.setattr(numeric, "fixed_sum", counting)
    out = product(np.array([1.0, 1.0], np.float32))
    assert calls == [(2,)]  # one entry recomputed, the other certain from the float64 product
    assert out.tolist() == [1.0, 0.75]  # ties to even: 1 + 2**-24 rounds to 1.0


def test_orthonormal_columns_is_lapacks_q_to_float64_rounding():
    rng = np.random.default_rng(4)
    for _ in range(5):
        g = rng.standard_normal((128, 128))
        q = orthonormal_columns(g)
        ref, r = np.linalg.qr(g)
        ref *= np.sign(np.diag(r))
        assert np.abs(q - ref).max() < 1e-12
        assert np.abs(q.T @ q - np.eye(128)).max() < 1e-14
    with pytest.raises(ValueError, match="rank deficient"):
        orthonormal_columns(np.ones((4, 4)))
