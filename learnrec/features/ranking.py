"""Ranking features: one function computes them for training and for serving.

The re-ranker sees each (learner, candidate) pair through the features below. Training
builds its matrix by calling :func:`ranking_features` once per learner, exactly as the
recommendation path does for one request, so the two cannot drift apart (train/serve
skew is the classic silent failure of learning-to-rank systems).

Catalog-wide statistics (:class:`ItemStats`) are computed once from the training
interactions and saved in the model bundle; a learner's state (:class:`LearnerState`)
comes from their history and profile at request time.

Serving reads the statistics through :class:`~learnrec.features.csr.CsrMatrix` (numpy
only); scipy builds them in training and is imported only there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from learnrec.features.csr import CsrMatrix
from learnrec.features.regression import STRENGTH_GRID, fit_regression
from learnrec.features.space import UNKNOWN, FeatureSpace

if TYPE_CHECKING:
    from scipy import sparse

# How strong an event must be to count as completing an item (EVENT_STRENGTH of
# "complete"); sources without event types never reach it.
COMPLETION_STRENGTH = 4.0
SIMILAR_NEIGHBOURS = 200
# The exact regression keeps each item's strongest weights by magnitude, negative ones
# included (an item that predicts against a candidate is information too); catalogs up to
# this size keep all of them.
REGRESSION_NEIGHBOURS = 500
RECENT_ITEMS = 3

FEATURE_NAMES: tuple[str, ...] = (
    "retrieval_score",
    "retrieval_rank",
    "log_popularity",
    "popularity_percentile",
    "similarity_max",
    "similarity_mean",
    "similarity_recent",
    "similarity_rank",
    "regression_score",
    "regression_rank",
    "topic_affinity",
    "interest_match",
    "item_level",
    "level_gap",
    "abs_level_gap",
    "prerequisite_count",
    "prerequisites_seen",
    "prerequisites_completed",
    "log_history_length",
)


@dataclass
class ItemStats:
    """Per-item statistics indexed like the item vocabulary (row 0 = unknown item).

    ``popularity`` [N+1], ``level`` [N+1] (NaN unknown), ``tokens`` [N+1, T] binary
    topics and tags, ``prerequisites`` [N+1, N+1] binary, ``similarity`` [N+1, N+1]
    item-item cosine over co-engagement, pruned to the strongest neighbours per item;
    the item-item weights of a ridge regression of each item on all others (EASE,
    :mod:`learnrec.features.regression`) either as ``regression`` [N+1, N+1] (exact, each
    row's largest weights by magnitude) or, for large catalogs, as ``regression_factors``
    [N+1, r] and ``regression_scale`` [N+1] (``B_ij = f_i·f_j * scale_j``); the other
    form is empty. ``regression_summary`` (how it was fitted) is not saved.
    """

    popularity: np.ndarray
    level: np.ndarray
    tokens: CsrMatrix
    prerequisites: CsrMatrix
    similarity: CsrMatrix
    regression: CsrMatrix
    token_keys: list[str] = field(default_factory=list)
    regression_factors: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
    )
    regression_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    regression_summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sorted_popularity = np.sort(self.popularity)
        self._token_index = {key: i for i, key in enumerate(self.token_keys)}

    @property
    def n_rows(self) -> int:
        return len(self.popularity)

    @property
    def has_regression(self) -> bool:
        return bool(self.regression.nnz) or self.regression_factors.size > 0

    def regression_scores(self, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Σ over the learner's history items i of B[i, candidate] [C]."""
        if self.regression_factors.size:
            summed = self.regression_factors[history].sum(axis=0)
            scores = (self.regression_factors[candidates] @ summed) * self.regression_scale[
                candidates
            ]
            return np.asarray(scores, dtype=np.float32)
        return np.asarray(self.regression.block(history, candidates).sum(axis=0))

    def popularity_percentile(self, counts: np.ndarray) -> np.ndarray:
        """Share of catalog rows less popular than each of ``counts``."""
        below = np.searchsorted(self._sorted_popularity, counts, side="left")
        return np.asarray(below / max(1, self.n_rows - 1))

    def token_columns(self, tokens: Iterable[str]) -> np.ndarray:
        return np.array(
            sorted({self._token_index[t] for t in tokens if t in self._token_index}), dtype=np.int64
        )

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "popularity": self.popularity,
            "level": self.level,
            "token_keys": np.array(self.token_keys, dtype=str),
            **self.tokens.arrays("tokens"),
            **self.prerequisites.arrays("prerequisites"),
            **self.similarity.arrays("similarity"),
            **self.regression.arrays("regression"),
            "regression_factors": self.regression_factors,
            "regression_scale": self.regression_scale,
        }
        # Uncompressed: inflating took a tenth of the load at 100k items, for a file
        # that is downloaded once per container.
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                popularity=data["popularity"],
                level=data["level"],
                tokens=CsrMatrix.from_arrays(data, "tokens"),
                prerequisites=CsrMatrix.from_arrays(data, "prerequisites"),
                similarity=CsrMatrix.from_arrays(data, "similarity"),
                regression=CsrMatrix.from_arrays(data, "regression"),
                token_keys=[str(k) for k in data["token_keys"]],
                # Bundles from before the low-rank form have the exact matrix only.
                **{
                    name: data[name]
                    for name in ("regression_factors", "regression_scale")
                    if name in data.files
                },
            )


def build_item_stats(
    space: FeatureSpace,
    item_tokens: Sequence[Sequence[str]],
    item_levels: Sequence[float],
    item_prerequisites: Sequence[Sequence[str]],
    interactions: Iterable[tuple[str, str]],
    neighbours: int = SIMILAR_NEIGHBOURS,
    regression_strengths: Sequence[float] = STRENGTH_GRID,
    seed: int = 0,
) -> ItemStats:
    """Statistics for the items of ``space`` (argument i describes item index i + 1).

    Only topic and tag tokens enter ``tokens``: level and format are features of their
    own, and would make every pair of same-level items look alike. The regression's
    strength is chosen among ``regression_strengths`` on a held-out split of
    ``interactions`` (one value: no search).
    """
    from scipy import sparse  # training only: serving never builds statistics

    n = space.items.size
    pairs = [(space.users.index(u), space.items.index(i)) for u, i in interactions]
    rows = np.array([u for u, i in pairs if i != UNKNOWN], dtype=np.int64)
    cols = np.array([i for _, i in pairs if i != UNKNOWN], dtype=np.int64)
    # Unknown users still count: popularity and co-engagement don't need a user id.
    engaged = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(space.users.size, n)
    )
    engaged.data[:] = 1.0
    engaged.sum_duplicates()
    engaged.data[:] = 1.0
    popularity = np.asarray(engaged.sum(axis=0)).ravel().astype(np.float64)

    keys = sorted({t for tokens in item_tokens for t in tokens if t.startswith(("topic:", "tag:"))})
    key_index = {k: c for c, k in enumerate(keys)}
    t_rows, t_cols = [], []
    for i, tokens in enumerate(item_tokens):
        for t in tokens:
            if t in key_index:
                t_rows.append(i + 1)
                t_cols.append(key_index[t])
    token_matrix = sparse.csr_matrix(
        (np.ones(len(t_rows), dtype=np.float32), (t_rows, t_cols)), shape=(n, len(keys))
    )
    p_rows, p_cols = [], []
    for i, prereqs in enumerate(item_prerequisites):
        for p in prereqs:
            j = space.items.index(p)
            if j != UNKNOWN:
                p_rows.append(i + 1)
                p_cols.append(j)
    prerequisites = sparse.csr_matrix(
        (np.ones(len(p_rows), dtype=np.float32), (p_rows, p_cols)), shape=(n, n)
    )
    level = np.full(n, np.nan)
    level[1:] = np.asarray(item_levels, dtype=float)
    regression = _item_regression(engaged, regression_strengths, seed)
    return ItemStats(
        popularity=popularity,
        level=level,
        tokens=CsrMatrix.from_scipy(token_matrix),
        prerequisites=CsrMatrix.from_scipy(prerequisites),
        similarity=CsrMatrix.from_scipy(cosine_item_similarity(engaged, popularity, neighbours)),
        token_keys=keys,
        **regression,
    )


def _item_regression(
    engaged: sparse.csr_matrix, strengths: Sequence[float], seed: int
) -> dict[str, Any]:
    """EASE's item-item weights as ItemStats fields: exact or low-rank by catalog size.

    Cosine treats every co-engagement alike; the regression discounts items that are
    co-engaged only because both are popular, which is why it usually ranks better and
    why the ranker benefits from having both.
    """
    from scipy import sparse

    n = engaged.shape[1]
    if engaged.nnz == 0:
        return {"regression": CsrMatrix.empty((n, n))}
    fitted = fit_regression(engaged, strengths, seed=seed)
    summary = fitted.summary()
    if fitted.weights is not None:
        weights = sparse.csr_matrix(fitted.weights)
        return {
            "regression": CsrMatrix.from_scipy(
                _prune(weights, REGRESSION_NEIGHBOURS, by_magnitude=True)
            ),
            "regression_summary": summary,
        }
    assert fitted.factors is not None and fitted.scale is not None
    return {
        "regression": CsrMatrix.empty((n, n)),
        "regression_factors": fitted.factors,
        "regression_scale": fitted.scale,
        "regression_summary": summary,
    }


def cosine_item_similarity(
    engaged: sparse.csr_matrix, popularity: np.ndarray, neighbours: int
) -> sparse.csr_matrix:
    """Cosine between items' learner sets, keeping each item's top neighbours."""
    from scipy import sparse

    co = (engaged.T @ engaged).tocsr().astype(np.float32)
    co.setdiag(0)
    co.eliminate_zeros()
    norms = np.sqrt(np.maximum(popularity, 1.0)).astype(np.float32)
    co = sparse.diags(1 / norms) @ co @ sparse.diags(1 / norms)
    return _prune(co.tocsr(), neighbours)


def _prune(co: sparse.csr_matrix, neighbours: int, by_magnitude: bool = False) -> sparse.csr_matrix:
    """Keep each row's ``neighbours`` largest entries (largest in absolute value)."""
    from scipy import sparse

    co.eliminate_zeros()
    rows, cols, vals = [], [], []
    for r in range(co.shape[0]):
        start, end = co.indptr[r], co.indptr[r + 1]
        if end == start:
            continue
        data = co.data[start:end]
        idx = co.indices[start:end]
        if len(data) > neighbours:
            keep = np.argpartition(-(np.abs(data) if by_magnitude else data), neighbours)
            keep = keep[:neighbours]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(data), r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sparse.csr_matrix(co.shape, dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=co.shape
    )


@dataclass(frozen=True)
class LearnerState:
    """What the ranker knows of one learner at request time.

    ``history`` item indices, oldest first, and ``strengths`` of the same length (the
    strongest event per item); ``declared_level`` NaN when not given; ``interests`` item
    token keys such as ``topic:python`` from the profile.
    """

    history: np.ndarray
    strengths: np.ndarray
    declared_level: float = float("nan")
    interests: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        space: FeatureSpace,
        history_ids: Sequence[str],
        strengths: Sequence[float],
        level: float | None,
        interests: Iterable[str],
    ) -> LearnerState:
        """From content ids and a declared profile; interests as the items' topic tokens."""
        return cls(
            history=space.items.lookup(history_ids),
            strengths=np.asarray(strengths, dtype=np.float32),
            declared_level=math.nan if level is None else float(level),
            interests=tuple(f"topic:{t}" for t in interests),
        )


def ranking_features(
    stats: ItemStats, learner: LearnerState, candidates: np.ndarray, retrieval_scores: np.ndarray
) -> np.ndarray:
    """Features [C, len(FEATURE_NAMES)] float32 for candidate item indices [C].

    ``retrieval_scores`` [C] are the two-tower scores; candidates are ranked by them for
    ``retrieval_rank``. Unknown values are NaN, which XGBoost routes as missing.
    """
    c = len(candidates)
    out = np.full((c, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    if c == 0:
        return out
    history = learner.history[learner.history != UNKNOWN]
    out[:, 0] = retrieval_scores
    out[:, 1] = _ranks(-retrieval_scores)
    out[:, 2] = np.log1p(stats.popularity[candidates])
    out[:, 3] = stats.popularity_percentile(stats.popularity[candidates])

    if len(history):
        block = stats.similarity.block(candidates, history)
        out[:, 4] = block.max(axis=1)
        out[:, 5] = block.mean(axis=1)
        out[:, 6] = block[:, -RECENT_ITEMS:].mean(axis=1)
        # The rank among this learner's candidates is what item-to-item kNN would
        # use; a rank transfers across learners where raw similarities don't.
        out[:, 7] = _ranks(-out[:, 5])
        if stats.has_regression:
            out[:, 8] = stats.regression_scores(history, candidates)
            out[:, 9] = _ranks(-out[:, 8])
        profile = stats.tokens.column_sums(history)
        norm = np.linalg.norm(profile)
        if norm > 0:
            cand_norm = np.sqrt(stats.tokens.row_sums(candidates))
            dots = stats.tokens.row_dots(candidates, profile)
            out[:, 10] = np.where(cand_norm > 0, dots / (norm * np.maximum(cand_norm, 1e-9)), 0.0)
    else:
        out[:, 4:8] = 0.0
        if stats.has_regression:
            out[:, 8:10] = 0.0

    interest_cols = stats.token_columns(learner.interests)
    if len(interest_cols):
        n_tokens = stats.tokens.row_sums(candidates)
        hits = stats.tokens.block(candidates, interest_cols).sum(axis=1)
        out[:, 11] = np.where(n_tokens > 0, hits / np.maximum(n_tokens, 1), 0.0)

    item_level = stats.level[candidates]
    out[:, 12] = item_level
    learner_level = learner.declared_level
    if np.isnan(learner_level) and len(history):
        levels = stats.level[history]
        levels = levels[~np.isnan(levels)]
        if len(levels):
            learner_level = float(levels[-10:].mean())
    out[:, 13] = item_level - learner_level
    out[:, 14] = np.abs(item_level - learner_level)

    count = stats.prerequisites.row_sums(candidates)
    out[:, 15] = count
    if count.any():
        seen = np.zeros(stats.n_rows, dtype=np.float32)
        seen[history] = 1.0
        done = np.zeros(stats.n_rows, dtype=np.float32)
        done[learner.history[learner.strengths >= COMPLETION_STRENGTH]] = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            seen_share = stats.prerequisites.row_dots(candidates, seen) / count
            done_share = stats.prerequisites.row_dots(candidates, done) / count
            out[:, 16] = np.where(count > 0, seen_share, np.nan)
            out[:, 17] = np.where(count > 0, done_share, np.nan)
    out[:, 18] = np.log1p(len(history))
    return out


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the smallest value, 1 for the next, ... (ties in input order)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[order] = np.arange(len(values), dtype=np.float32)
    return ranks
