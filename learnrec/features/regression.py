"""Item regression (EASE, Steck 2019), fitted in training: exact where the catalog is
small, a low-rank form that keeps negative weights where it is large, and its strength
chosen on held-out interactions rather than by a rule of thumb.

EASE solves ``B = argmin ||X - XB||² + λ||B||²`` with ``diag(B) = 0`` in closed form:
``P = (XᵀX + λI)⁻¹``, ``B = I - P diag(1/diag(P))``. With the Gram matrix's eigenpairs
``XᵀX = V diag(s) Vᵀ`` every λ costs one product instead of one inversion, which is what
makes a search over λ cheap. The inverse needs the dense N x N Gram matrix, so above
:data:`EXACT_MAX_ITEMS` only the top :data:`FACTOR_RANK` eigenpairs are kept (a truncated
SVD of X): then ``P ≈ (I - V diag(s/(s+λ)) Vᵀ)/λ`` and, for i ≠ j,
``B_ij ≈ q_i·q_j / (1 - |q_j|²)`` with ``q = V diag(sqrt(s/(s+λ)))``: r numbers per item
and one scale, so 100k items cost 100k x (r + 1) float32 in the bundle (26 MB at r = 64)
and a learner's score is one r-vector sum over their history.

scipy and scikit-learn are imported inside functions: serving never fits a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

EXACT_MAX_ITEMS = 3000
FACTOR_RANK = 64
# λ is searched over four decades around the data's own scale: the regression's useful
# strength grows with how often items co-occur, which differs by orders of magnitude
# between datasets.
STRENGTH_GRID: tuple[float, ...] = tuple(float(v) for v in 10 ** np.arange(0.0, 4.01, 0.5))
VALIDATION_FRACTION = 0.2
MAX_VALIDATION_USERS = 3000

Kind = Literal["exact", "low_rank"]


@dataclass(frozen=True)
class Regression:
    """A fitted item regression over N items (columns of the matrix it was fitted on).

    ``weights`` [N, N] (exact; zero diagonal) or ``factors`` [N, r] with ``scale`` [N]
    (low-rank, ``B_ij = factors_i·factors_j * scale_j``), never both.
    """

    strength: float
    weights: np.ndarray | None = None
    factors: np.ndarray | None = None
    scale: np.ndarray | None = None
    search: list[dict[str, float]] = field(default_factory=list)

    @property
    def kind(self) -> Kind:
        return "exact" if self.weights is not None else "low_rank"

    @property
    def n_items(self) -> int:
        if self.weights is not None:
            return int(self.weights.shape[0])
        assert self.factors is not None
        return int(self.factors.shape[0])

    def scores(self, rows: sparse.csr_matrix) -> np.ndarray:
        """Scores [U, N] of every item for each row of a user-item matrix [U, N]."""
        if self.weights is not None:
            return np.asarray(rows @ self.weights)
        assert self.factors is not None and self.scale is not None
        product: np.ndarray = np.asarray((rows @ self.factors) @ self.factors.T)
        return np.asarray(product * self.scale[None, :])

    def summary(self) -> dict[str, Any]:
        """What a bundle's manifest records: the kind, the chosen λ and what was tried."""
        out: dict[str, Any] = {"kind": self.kind, "strength": self.strength}
        if self.factors is not None:
            out["rank"] = int(self.factors.shape[1])
        out["search"] = self.search
        return out


@dataclass(frozen=True)
class _Spectrum:
    """Eigenpairs of the Gram matrix: all of them (exact) or the top r (low-rank)."""

    values: np.ndarray  # [r]
    vectors: np.ndarray  # [N, r]
    exact: bool

    def low_rank(self, strength: float) -> Regression:
        """The low-rank regression (exact ones are refitted by :func:`_exact`)."""
        factors, scale = self._factors(strength)
        return Regression(strength, factors=factors, scale=scale)

    def _factors(self, strength: float) -> tuple[np.ndarray, np.ndarray]:
        keep = self.values / (self.values + strength)
        factors = self.vectors * np.sqrt(keep)[None, :]
        # 1 - |q_j|² is λ·P_jj > 0 in exact arithmetic; the floor only guards round-off.
        scale = 1.0 / np.maximum(1.0 - (factors**2).sum(axis=1), 1e-6)
        return factors.astype(np.float32), scale.astype(np.float32)

    def scores(self, rows: sparse.csr_matrix, strength: float) -> np.ndarray:
        """Scores of unseen items for ``rows`` without forming B (seen items are not valid)."""
        shrink = 1.0 / (self.values + strength)
        if self.exact:
            projected = np.asarray(rows @ self.vectors)
            numerator = (projected * shrink[None, :]) @ self.vectors.T
            diagonal = (self.vectors**2) @ shrink
            return np.asarray(-numerator / diagonal[None, :])
        factors, scale = self._factors(strength)
        product: np.ndarray = np.asarray((rows @ factors) @ factors.T)
        return np.asarray(product * scale[None, :])


def _spectrum(engaged: sparse.csr_matrix, exact_max_items: int, rank: int, seed: int) -> _Spectrum:
    n = engaged.shape[1]
    if n <= exact_max_items:
        gram = (engaged.T @ engaged).toarray().astype(np.float64)
        values, vectors = np.linalg.eigh(gram)
        return _Spectrum(np.maximum(values, 0.0), vectors, exact=True)
    from sklearn.utils.extmath import randomized_svd

    r = max(1, min(rank, n - 1, engaged.shape[0] - 1))
    _, singular, vt = randomized_svd(engaged.astype(np.float64), r, n_iter=5, random_state=seed)
    return _Spectrum(singular.astype(np.float64) ** 2, vt.T.astype(np.float64), exact=False)


def _exact(engaged: sparse.csr_matrix, strength: float) -> Regression:
    gram = (engaged.T @ engaged).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += strength
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return Regression(strength, weights=weights.astype(np.float32))


def holdout(
    engaged: sparse.csr_matrix, fraction: float = VALIDATION_FRACTION, seed: int = 0
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Split a binary user-item matrix per user: ``fraction`` of each user's items (at
    least one, for users with two or more) to the second matrix, the rest to the first."""
    from scipy import sparse

    rng = np.random.default_rng(seed)
    csr = engaged.tocsr()
    keep_rows, keep_cols, held_rows, held_cols = [], [], [], []
    for user in range(csr.shape[0]):
        items = csr.indices[csr.indptr[user] : csr.indptr[user + 1]]
        if len(items) < 2:
            keep_rows.append(np.full(len(items), user))
            keep_cols.append(items)
            continue
        shuffled = rng.permutation(items)
        n_held = min(len(items) - 1, max(1, round(fraction * len(items))))
        held_rows.append(np.full(n_held, user))
        held_cols.append(shuffled[:n_held])
        keep_rows.append(np.full(len(items) - n_held, user))
        keep_cols.append(shuffled[n_held:])

    def matrix(rows: list[np.ndarray], cols: list[np.ndarray]) -> sparse.csr_matrix:
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return sparse.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=csr.shape)

    return matrix(keep_rows, keep_cols), matrix(held_rows, held_cols)


def ndcg_at_k(
    scores: np.ndarray, seen: sparse.csr_matrix, relevant: sparse.csr_matrix, k: int
) -> float:
    """Mean NDCG@k (binary relevance, ideal over min(k, |relevant|)) of ranking every
    unseen item by ``scores`` [U, N], over the rows with at least one relevant item."""
    total, count = _ndcg_sum(scores, seen, relevant, k)
    return total / count if count else 0.0


def _ndcg_sum(
    scores: np.ndarray, seen: sparse.csr_matrix, relevant: sparse.csr_matrix, k: int
) -> tuple[float, int]:
    scores = np.array(scores, dtype=np.float64, copy=True)
    seen_coo = seen.tocoo()
    scores[seen_coo.row, seen_coo.col] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    relevant = relevant.tocsr()
    hits = np.zeros(top.shape, dtype=np.float64)
    for row in range(top.shape[0]):
        wanted = relevant.indices[relevant.indptr[row] : relevant.indptr[row + 1]]
        hits[row] = np.isin(top[row], wanted)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    counts = np.diff(relevant.indptr)
    ideal = np.array([discounts[: min(k, int(c))].sum() for c in counts])
    valid = counts > 0
    return float(((hits @ discounts)[valid] / ideal[valid]).sum()), int(valid.sum())


def validation_rows(
    fit: sparse.csr_matrix, held: sparse.csr_matrix, seed: int, limit: int = MAX_VALIDATION_USERS
) -> np.ndarray:
    """Users with something held out and something to go on, at most ``limit`` (seeded)."""
    useful = np.flatnonzero((np.diff(held.indptr) > 0) & (np.diff(fit.indptr) > 0))
    if len(useful) > limit:
        useful = np.sort(np.random.default_rng(seed).choice(useful, limit, replace=False))
    return useful


def fit_regression(
    engaged: sparse.csr_matrix,
    strengths: Sequence[float] = STRENGTH_GRID,
    k: int = 10,
    seed: int = 0,
    exact_max_items: int | None = None,
    rank: int | None = None,
    validation: tuple[sparse.csr_matrix, sparse.csr_matrix] | None = None,
) -> Regression:
    """EASE on a binary user-item matrix, λ chosen by NDCG@k on a held-out split.

    ``validation`` is (what the users keep, what they hide) carved from ``engaged``; by
    default a seeded :func:`holdout`. The chosen λ is then refitted on all of
    ``engaged``. A single strength skips the search. ``exact_max_items`` and ``rank``
    default to :data:`EXACT_MAX_ITEMS` and :data:`FACTOR_RANK`.
    """
    exact_max_items = EXACT_MAX_ITEMS if exact_max_items is None else exact_max_items
    rank = FACTOR_RANK if rank is None else rank
    candidates = sorted({float(s) for s in strengths})
    if not candidates:
        raise ValueError("no regression strength to choose from")
    search: list[dict[str, float]] = []
    chosen = candidates[0]
    if len(candidates) > 1:
        fit, held = validation if validation is not None else holdout(engaged, seed=seed)
        users = validation_rows(fit, held, seed)
        if len(users):
            spectrum = _spectrum(fit, exact_max_items, rank, seed)
            best = -1.0
            # Scored in batches of learners: a dense [U, N] block at 100k items would not fit.
            batch = max(1, 2_000_000 // max(1, engaged.shape[1]))
            for strength in candidates:
                total, count = 0.0, 0
                for start in range(0, len(users), batch):
                    rows = users[start : start + batch]
                    found = _ndcg_sum(
                        spectrum.scores(fit[rows], strength), fit[rows], held[rows], k
                    )
                    total, count = total + found[0], count + found[1]
                score = total / count if count else 0.0
                search.append({"strength": strength, f"ndcg@{k}": round(score, 6)})
                if score > best:
                    best, chosen = score, strength
    if engaged.shape[1] <= exact_max_items:
        fitted = _exact(engaged, chosen)  # one inversion: cheaper than the eigenpairs
    else:
        fitted = _spectrum(engaged, exact_max_items, rank, seed).low_rank(chosen)
    return Regression(
        chosen, weights=fitted.weights, factors=fitted.factors, scale=fitted.scale, search=search
    )
