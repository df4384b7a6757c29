"""The numpy CSR reads equal scipy.sparse's on the same matrices (training uses scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from learnrec.features.csr import CsrMatrix


def _random_csr(rows: int, cols: int, nnz: int, seed: int) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=nnz).astype(np.float32)
    # Repeated (row, col) pairs are summed by scipy, as training's matrices are.
    coo = (values, (rng.integers(0, rows, nnz), rng.integers(0, cols, nnz)))
    return sparse.csr_matrix(coo, shape=(rows, cols))


@pytest.mark.parametrize("seed", range(5))
def test_reads_match_scipy(seed: int) -> None:
    reference = _random_csr(300, 200, 2000, seed)
    matrix = CsrMatrix.from_scipy(reference)
    rng = np.random.default_rng(100 + seed)
    rows = rng.integers(0, 300, 40)  # repeats included
    cols = rng.integers(0, 200, 25)
    vector = rng.normal(size=200).astype(np.float32)

    np.testing.assert_array_equal(matrix.block(rows, cols), reference[rows][:, cols].toarray())
    # Sums differ only by float32 rounding: scipy accumulates in float32, numpy in float64.
    sums = np.asarray(reference[rows].sum(axis=1)).ravel()
    np.testing.assert_allclose(matrix.row_sums(rows), sums, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        matrix.row_dots(rows, vector), reference[rows] @ vector, rtol=1e-5, atol=1e-5
    )
    columns_sums = np.asarray(reference[rows].sum(axis=0)).ravel()
    np.testing.assert_allclose(matrix.column_sums(rows), columns_sums, rtol=1e-5, atol=1e-5)
    columns, values = matrix.row(int(rows[0]))
    expected = reference[int(rows[0])]
    np.testing.assert_array_equal(columns, expected.indices)
    np.testing.assert_array_equal(values, expected.data)
    assert matrix.nnz == reference.nnz


def test_empty_selections_and_empty_rows() -> None:
    matrix = CsrMatrix.empty((5, 4))
    assert matrix.nnz == 0
    assert matrix.block(np.array([0, 3]), np.array([1])).tolist() == [[0.0], [0.0]]
    assert matrix.block(np.array([], dtype=np.int64), np.array([1])).shape == (0, 1)
    assert matrix.row_sums(np.array([4])).tolist() == [0.0]
    assert matrix.column_sums(np.array([0, 1])).tolist() == [0.0] * 4


def test_arrays_round_trip_in_the_saved_layout() -> None:
    matrix = CsrMatrix.from_scipy(_random_csr(10, 7, 30, 1))
    arrays = matrix.arrays("similarity")
    assert set(arrays) == {f"similarity_{k}" for k in ("data", "indices", "indptr", "shape")}
    again = CsrMatrix.from_arrays(arrays, "similarity")
    assert again.shape == (10, 7)
    np.testing.assert_array_equal(
        again.block(np.arange(10), np.arange(7)), matrix.block(np.arange(10), np.arange(7))
    )


def test_inconsistent_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent CSR"):
        CsrMatrix(np.ones(2), np.zeros(2, np.int32), np.zeros(3, np.int64), (5, 5))
