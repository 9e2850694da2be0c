"""The search backends against a plain row-major ``X @ q`` reference: scores, top rows, ties, growth."""

from __future__ import annotations

import numpy as np
import pytest

from edge.gallery import backends
from edge.gallery.backends import NumpyBackend, make_backend


def _reference_top(x: np.ndarray, q: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``m`` rows of the plain product, best first, ties to the lower row."""
    scores = x @ q
    rows = np.lexsort((np.arange(len(x)), -scores))[:m]
    return scores[rows], rows


def _grown(backend: NumpyBackend, x: np.ndarray) -> None:
    """Rows added in uneven steps, so the matrix has spare columns and the search a strided view."""
    for start, stop in ((0, 1), (1, 7), (7, 150), (150, 151), (151, len(x))):
        backend.add(x[start:stop])


@pytest.mark.parametrize("n", [1, 2, 5, 300, 4099])
def test_numpy_scores_and_top_rows_match_the_plain_product(unit, n):
    x = unit(n)
    b = NumpyBackend(128)
    _grown(b, x)
    assert b._buf.shape[1] >= n
    np.testing.assert_array_equal(b.vectors(), x)
    for q in unit(5):
        np.testing.assert_allclose(b.scores(q), x @ q, rtol=0, atol=2e-6)
        for m in (1, 2, 6):
            scores, rows = b.top(q, m)
            want_scores, want_rows = _reference_top(x, q, m)
            np.testing.assert_array_equal(rows, want_rows)
            np.testing.assert_allclose(scores, want_scores, rtol=0, atol=2e-6)


def test_numpy_ties_go_to_the_lowest_row_like_argmax():
    # components are multiples of 1/8 and the probe's of 1/2, so every product and sum is exact in
    # float32 and any summation order gives the same bits: the tie is a true tie
    rng = np.random.default_rng(3)
    x = (rng.integers(-4, 5, size=(1000, 128)) / 8).astype(np.float32)
    q = (rng.integers(-2, 3, size=128) / 2).astype(np.float32)
    best = x[int(np.argmax(x @ q))].copy()
    for row in (17, 500, 999):
        x[row] = best
    b = NumpyBackend(128)
    _grown(b, x)
    want = int(np.argmax(x @ q))
    assert want <= 17
    scores, rows = b.top(q, 4)
    np.testing.assert_array_equal(b.scores(q), x @ q)
    assert int(rows[0]) == want
    assert scores[0] == scores[1] == float(x[want] @ q)
    # more tied rows than asked for: the lowest rows win, in row order (numpy's AVX-512 selection
    # returned row 500 first here before the backend broke ties itself)
    tied = [r for r in range(len(x)) if float(x[r] @ q) == float(x[want] @ q)]
    assert len(tied) >= 3
    _, rows2 = b.top(q, 2)
    assert rows2.tolist() == tied[:2]
    assert rows.tolist()[: len(tied[:4])] == tied[:4]


@pytest.mark.parametrize("name", ["numpy", "faiss", "faiss-sq8"])
def test_every_backend_breaks_exact_ties_by_row(name):
    # 40 identical rows among distinct ones: whatever order the index or the CPU's sort visits them
    # in, the top rows are the lowest tied rows, best first
    rng = np.random.default_rng(11)
    x = rng.standard_normal((400, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[5].copy()
    tied_rows = sorted({int(r) for r in rng.choice(np.arange(6, 400), size=40, replace=False)})
    x[tied_rows] = x[5]
    b = make_backend(name, 128)
    b.add(x)
    for m in (1, 3, 8):
        _, rows = b.top(q, m)
        assert rows.tolist() == ([5, *tied_rows])[:m], (name, m)


def test_numpy_keep_and_add_from_preserve_row_order(unit):
    x = unit(700)
    b = NumpyBackend(128)
    b.add_from(500, [x[:123], x[123:400], x[400:500]])
    assert b._buf.shape[1] == 500  # loaded exactly, no spare columns
    mask = np.ones(500, dtype=bool)
    mask[[0, 3, 250, 499]] = False
    b.keep(mask)
    b.add(x[500:])
    want = np.concatenate([x[:500][mask], x[500:]])
    np.testing.assert_array_equal(b.vectors(), want)
    q = unit(1)[0]
    np.testing.assert_allclose(b.scores(q), want @ q, rtol=0, atol=2e-6)
    assert int(b.top(q, 1)[1][0]) == int(np.argmax(want @ q))


def test_numpy_empty_backend_returns_nothing(unit):
    b = NumpyBackend(128)
    q = unit(1)[0]
    assert len(b.scores(q)) == 0
    scores, rows = b.top(q, 3)
    assert len(scores) == len(rows) == 0


def test_add_from_with_the_wrong_count_is_refused(unit):
    from edge.errors import StorageError

    for name in ("numpy", "faiss", "faiss-sq8"):
        b = make_backend(name, 128)
        with pytest.raises(StorageError, match="expected 10 templates, read 9"):
            b.add_from(10, [unit(9)])


@pytest.mark.parametrize("name", ["faiss", "faiss-sq8"])
def test_faiss_backends_load_the_same_rows_as_numpy(unit, name):
    x = unit(3000)
    ref = NumpyBackend(128)
    ref.add_from(3000, [x[:1000], x[1000:]])
    b = make_backend(name, 128)
    b.add_from(3000, [x[:1000], x[1000:]])
    # faiss holds the float32 rows; faiss-sq8 rebuilds them from three int8 levels, each component
    # to within 6.1e-8 (float32 rounding of a unit component is up to 3e-8)
    atol = 0.0 if name == "faiss" else 6.2e-8
    np.testing.assert_allclose(b.vectors(), ref.vectors(), rtol=0, atol=atol)
    np.testing.assert_allclose(b.rows(np.array([2999, 0, 7])), x[[2999, 0, 7]], rtol=0, atol=atol)
    for q in unit(5):
        scores, rows = b.top(q, 3)
        want_scores, want_rows = _reference_top(x, q, 3)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=2e-6)


def test_sq8_rows_added_one_by_one_equal_rows_loaded_in_bulk(unit):
    """Enrolment (add) and a reopen (add_from) must build the same codes and levels, or a
    reopened gallery could shortlist and score differently; keep() must drop both together."""
    x = unit(500)
    grown, loaded = make_backend("faiss-sq8", 128), make_backend("faiss-sq8", 128)
    for i in range(0, 500, 7):
        grown.add(x[i : i + 7])
    loaded.add_from(500, [x[:250], x[250:]])
    np.testing.assert_array_equal(grown.vectors(), loaded.vectors())
    for q in unit(20):
        np.testing.assert_array_equal(grown.top(q, 5)[1], loaded.top(q, 5)[1])
    mask = np.arange(500) % 3 != 0
    loaded.keep(mask)
    assert len(loaded) == int(mask.sum())
    np.testing.assert_allclose(loaded.vectors(), x[mask], rtol=0, atol=2e-6)


def test_one_blas_thread_holds_one_thread_and_restores_the_count():
    setter = backends._blas_threads_setter()
    if setter is None:
        pytest.skip("numpy's BLAS has no openblas_set_num_threads_local")
    before = setter(2)
    try:
        with backends.one_blas_thread():
            with backends.one_blas_thread():  # nested: the outer one's saved count survives
                assert setter(1) == 1
            assert setter(1) == 1
        assert setter(2) == 2
        with pytest.raises(RuntimeError), backends.one_blas_thread():
            raise RuntimeError("search failed")
        assert setter(2) == 2  # restored on error too
    finally:
        setter(before)


def test_sq8_levels_rebuild_rows_to_float32_rounding_and_refuse_longer_rows(unit):
    from edge.errors import StorageError

    b = make_backend("faiss-sq8", 128)
    x = unit(400)
    x[0] = 0.0
    x[0, 5] = 1.0  # a component at the limit: c1 = 127 exactly
    x[1] = -x[0]
    b.add(x)
    assert isinstance(b, backends.FaissSQ8Backend)
    fine = b._fine.vectors().reshape(400, 3, 128)
    assert fine.dtype == np.int8
    assert int(np.abs(fine.astype(np.int16)).max()) <= 127  # -128 never used: levels are symmetric
    # three int8 levels hold a unit component to within 0.5 / (127 * 254**2) = 6.1e-8
    np.testing.assert_allclose(b.vectors(), x, rtol=0, atol=6.2e-8)
    for q in unit(10):  # the scores are those of the float rows
        scores, rows = b.top(q, 3)
        want_scores, want_rows = _reference_top(x, q, 3)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
    with pytest.raises(StorageError, match="unit-length"):
        b.add(2 * x[:1])
    assert len(b) == 400
