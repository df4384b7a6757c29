"""A compressed-sparse-row matrix in plain numpy, for the few reads serving makes.

Ranking features read small blocks of the catalog-wide item matrices (candidates x
history items, token rows of ~100 candidates). scipy.sparse answers those too, but it is
~140 MB of the Lambda package and each fancy-indexing call builds intermediate matrices
(measured ~2.7 ms per request); these gathers are a few vectorised numpy passes over
only the rows asked for. Training builds the matrices with scipy and converts them with
:meth:`CsrMatrix.from_scipy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CsrMatrix:
    """``shape`` [R, C]; row r's columns ``indices[indptr[r]:indptr[r+1]]`` and values ``data``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        if len(self.indptr) != self.shape[0] + 1 or len(self.indices) != len(self.data):
            raise ValueError(
                f"inconsistent CSR arrays: indptr {len(self.indptr)} for {self.shape[0]} rows, "
                f"{len(self.indices)} indices for {len(self.data)} values"
            )

    @classmethod
    def empty(cls, shape: tuple[int, int], dtype: Any = np.float32) -> CsrMatrix:
        return cls(
            np.zeros(0, dtype=dtype),
            np.zeros(0, dtype=np.int32),
            np.zeros(shape[0] + 1, dtype=np.int64),
            (int(shape[0]), int(shape[1])),
        )

    @classmethod
    def from_scipy(cls, matrix: Any) -> CsrMatrix:
        """From any scipy.sparse matrix (converted to canonical CSR: sorted, summed)."""
        csr = matrix.tocsr()
        csr.sum_duplicates()
        return cls(csr.data, csr.indices, csr.indptr, (int(csr.shape[0]), int(csr.shape[1])))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], name: str) -> CsrMatrix:
        """Read what :meth:`arrays` wrote under ``name``."""
        rows, cols = (int(v) for v in arrays[f"{name}_shape"])
        return cls(
            arrays[f"{name}_data"],
            arrays[f"{name}_indices"],
            arrays[f"{name}_indptr"],
            (rows, cols),
        )

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays to save under ``name`` (the layout scipy-era bundles used)."""
        return {
            f"{name}_data": self.data,
            f"{name}_indices": self.indices,
            f"{name}_indptr": self.indptr,
            f"{name}_shape": np.array(self.shape),
        }

    @property
    def nnz(self) -> int:
        return len(self.data)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and values of row ``r``."""
        start, end = int(self.indptr[r]), int(self.indptr[r + 1])
        return self.indices[start:end], self.data[start:end]

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored entries of ``rows`` (positions into ``rows``, columns, values)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        owner = np.repeat(np.arange(len(rows)), lengths)
        # Entry k of row i sits at starts[i] + (k - first entry of row i in the output).
        first = np.cumsum(lengths) - lengths
        positions = starts[owner] + np.arange(total) - first[owner]
        return owner, self.indices[positions], self.data[positions]

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dense float32 [len(rows), len(cols)] of the sub-matrix (``m[rows][:, cols]``).

        Repeated rows or columns repeat, as in numpy fancy indexing.
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if len(rows) == 0 or len(cols) == 0:
            return np.zeros((len(rows), len(cols)), dtype=np.float32)
        unique, inverse = np.unique(cols, return_inverse=True)
        owner, columns, values = self.gather(rows)
        slot = np.searchsorted(unique, columns)
        slot_ok = np.minimum(slot, len(unique) - 1)
        keep = unique[slot_ok] == columns
        flat = owner[keep] * len(unique) + slot_ok[keep]
        dense = np.bincount(flat, weights=values[keep], minlength=len(rows) * len(unique))
        return dense.reshape(len(rows), len(unique))[:, inverse].astype(np.float32)

    def row_sums(self, rows: np.ndarray) -> np.ndarray:
        """Sum of each of ``rows`` [len(rows)]."""
        owner, _, values = self.gather(rows)
        return np.bincount(owner, weights=values, minlength=len(rows))

    def row_dots(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """``m[rows] @ vector`` for a dense vector [C]."""
        owner, columns, values = self.gather(rows)
        return np.bincount(owner, weights=values * vector[columns], minlength=len(rows))

    def column_sums(self, rows: np.ndarray) -> np.ndarray:
        """Sum over ``rows`` of each column [C] (``m[rows].sum(axis=0)``)."""
        _, columns, values = self.gather(rows)
        return np.bincount(columns, weights=values, minlength=self.shape[1])
