"""Top-k ranking metrics with binary relevance, per user and averaged over users.

All metrics are computed from one boolean "hit matrix" (users x k ranks): the per-user
functions and :func:`evaluate_rankings` share that code path, so a number in a unit test
and a number in a report can never disagree about a definition.

Conventions, chosen to match the usual literature definitions so results are comparable:

- precision@k always divides by ``k``: a model that returns fewer than ``k`` items is not
  rewarded for it.
- MAP@k and NDCG@k normalise by ``min(k, |relevant|)`` so that a perfect top-k list
  scores 1 even when a learner has more relevant items than fit in ``k`` slots.
- Averages run over users with at least one relevant item: a user with nothing to find
  says nothing about ranking quality. Such users in ``relevant`` but missing from the
  recommendations *do* count, with zero scores, so a model cannot improve its numbers by
  skipping hard users.
- Duplicate items in one list raise :class:`ValueError`: they would inflate hits and
  always mean a bug in the model or candidate merging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

METRIC_NAMES = ("precision", "recall", "ndcg", "map")
"""Per-user metrics in report order; coverage is catalog-level and is added separately."""


@dataclass(frozen=True)
class PerUserMetrics:
    """Per-user scores kept aligned with user ids, for paired comparisons between models."""

    users: tuple[str, ...]
    scores: dict[str, FloatArray]
    """Metric name (``precision@10`` ...) -> one score per entry of ``users``."""


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _check_unique(recommended: Sequence[str], user: str | None = None) -> None:
    if len(set(recommended)) != len(recommended):
        dupes = sorted(item for item, n in Counter(recommended).items() if n > 1)
        who = f" for user {user!r}" if user is not None else ""
        raise ValueError(f"duplicate items in recommendation list{who}: {dupes[:5]}")


def _hit_row(
    recommended: Sequence[str], relevant: Collection[str], k: int, user: str | None = None
) -> list[bool]:
    """Hit flags for ranks 1..k, padded with misses so every row has length k."""
    _check_unique(recommended, user)
    rel = relevant if isinstance(relevant, set | frozenset) else set(relevant)
    row = [item in rel for item in recommended[:k]]
    row.extend([False] * (k - len(row)))
    return row


def _scores(hits: BoolArray, n_relevant: FloatArray, k: int) -> dict[str, FloatArray]:
    """All per-user metrics from a (users x k) hit matrix; rows with no relevant items get 0."""
    h = hits.astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    n_hits = h.sum(axis=1)
    has_rel = n_relevant > 0
    # Normaliser for NDCG and MAP: the most hits a perfect top-k list could contain.
    ideal_hits = np.minimum(n_relevant, k).astype(np.int64)
    ideal_dcg = np.concatenate(([0.0], np.cumsum(discounts)))[ideal_hits]
    denom_rel = np.where(has_rel, n_relevant, 1.0)
    denom_ideal = np.where(has_rel, ideal_hits, 1).astype(np.float64)
    denom_idcg = np.where(has_rel, ideal_dcg, 1.0)
    precision_at_rank = np.cumsum(h, axis=1) / ranks
    return {
        "precision": n_hits / k,
        "recall": np.where(has_rel, n_hits / denom_rel, 0.0),
        "ndcg": np.where(has_rel, (h @ discounts) / denom_idcg, 0.0),
        "map": np.where(has_rel, (h * precision_at_rank).sum(axis=1) / denom_ideal, 0.0),
    }


def _single(recommended: Sequence[str], relevant: Collection[str], k: int, name: str) -> float:
    _check_k(k)
    row = _hit_row(recommended, relevant, k)
    n_rel = np.array([len(set(relevant))], dtype=np.float64)
    return float(_scores(np.array([row], dtype=np.bool_), n_rel, k)[name][0])


def precision_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the k slots that hold a relevant item (divides by k even for short lists)."""
    return _single(recommended, relevant, k, "precision")


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the user's relevant items found in the top k; 0 when nothing is relevant."""
    return _single(recommended, relevant, k, "recall")


def ndcg_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Position-discounted hits relative to a perfect list; 0 when nothing is relevant."""
    return _single(recommended, relevant, k, "ndcg")


def average_precision_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Mean precision at each hit rank, over ``min(k, |relevant|)``; 0 when nothing is relevant."""
    return _single(recommended, relevant, k, "map")


def per_user_metrics(
    recommendations: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    k: int,
) -> PerUserMetrics:
    """Scores for every user with at least one relevant item, for bootstraps and drill-downs.

    Users are taken in ``relevant`` order so two models evaluated on the same test set line
    up row for row. Every recommendation list is checked for duplicates, including lists of
    users that are not evaluated, because a duplicate is a model bug wherever it appears.
    """
    _check_k(k)
    for user, recs in recommendations.items():
        _check_unique(recs, user)
    users: list[str] = []
    rows: list[list[bool]] = []
    n_rel: list[int] = []
    for user, rel_items in relevant.items():
        rel = rel_items if isinstance(rel_items, set | frozenset) else set(rel_items)
        if not rel:
            continue
        users.append(user)
        rows.append(_hit_row(recommendations.get(user, ()), rel, k, user))
        n_rel.append(len(rel))
    hits = np.array(rows, dtype=np.bool_).reshape(len(rows), k)
    scores = _scores(hits, np.array(n_rel, dtype=np.float64), k)
    return PerUserMetrics(
        users=tuple(users), scores={f"{name}@{k}": scores[name] for name in METRIC_NAMES}
    )


def coverage_at_k(recommendations: Mapping[str, Sequence[str]], k: int, catalog_size: int) -> float:
    """Share of the catalog shown to anyone: low coverage means the model ignores the long tail.

    Counts every list passed in, not only evaluated users, because coverage is about what
    the model surfaces, not about whether it was right.
    """
    _check_k(k)
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}")
    shown: set[str] = set()
    for recs in recommendations.values():
        shown.update(recs[:k])
    return len(shown) / catalog_size


def evaluate_rankings(
    recommendations: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    k: int,
    catalog_size: int,
) -> dict[str, float]:
    """Mean precision/recall/NDCG/MAP at k, catalog coverage at k, and the evaluated user count.

    Keys: ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``coverage@k`` and
    ``users`` (a float so the result stays a flat ``dict[str, float]`` that serialises
    straight to JSON). With no evaluable users the means are 0 rather than NaN, so a
    broken split shows up as zeros with ``users == 0`` instead of poisoning plots.
    """
    per_user = per_user_metrics(recommendations, relevant, k)
    result = {
        name: float(values.mean()) if values.size else 0.0
        for name, values in per_user.scores.items()
    }
    result[f"coverage@{k}"] = coverage_at_k(recommendations, k, catalog_size)
    result["users"] = float(len(per_user.users))
    return result


def paired_bootstrap_ci(
    scores_a: Sequence[float] | FloatArray,
    scores_b: Sequence[float] | FloatArray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users with a percentile bootstrap interval.

    Paired because both models are scored on the same users: resampling users jointly
    removes between-user variance, which dominates ranking metrics and would otherwise
    hide real differences. Returns ``(mean_difference, low, high)``.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("need at least one paired score")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    # Chunked so 10k users x 1000 resamples never materialises one 80 MB index matrix.
    chunk = max(1, 2_000_000 // diff.size)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(diff.mean()), float(low), float(high)
