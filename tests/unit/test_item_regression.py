"""The ranker's item-regression feature: exact on small catalogs, low-rank on large ones,
negative weights kept, never silently off, and the same after a save and a load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learnrec.features import regression
from learnrec.features.ranking import (
    FEATURE_NAMES,
    ItemStats,
    LearnerState,
    build_item_stats,
    ranking_features,
)
from learnrec.features.space import FeatureSpace

SCORE = FEATURE_NAMES.index("regression_score")


def _stats(n_items: int = 12, strengths: tuple[float, ...] = (4.0,)) -> ItemStats:
    rng = np.random.default_rng(2)
    users = [f"u{u}" for u in range(80)]
    items = [f"i{i}" for i in range(n_items)]
    space = FeatureSpace.build(users, items, [[] for _ in users], [[] for _ in items])
    pairs = []
    for u, user in enumerate(users):
        group = u % 3  # three tastes over overlapping item ranges
        for i in rng.choice(6, 4, replace=False):
            pairs.append((user, items[(group * 3 + int(i)) % n_items]))
    return build_item_stats(
        space,
        item_tokens=[[] for _ in items],
        item_levels=[float("nan")] * n_items,
        item_prerequisites=[[] for _ in items],
        interactions=pairs,
        regression_strengths=strengths,
    )


def test_small_catalogs_get_the_exact_regression_with_its_negative_weights() -> None:
    stats = _stats()
    assert stats.regression_summary["kind"] == "exact"
    assert stats.regression_summary["strength"] == 4.0
    assert stats.regression_factors.size == 0
    assert (stats.regression.data < 0).any()
    learner = LearnerState(history=np.array([1, 2]), strengths=np.ones(2, np.float32))
    candidates = np.array([3, 4, 7])
    features = ranking_features(stats, learner, candidates, np.zeros(3, np.float32))
    expected = stats.regression.block(np.array([1, 2]), candidates).sum(axis=0)
    np.testing.assert_allclose(features[:, SCORE], expected, rtol=1e-6)


def test_large_catalogs_get_a_low_rank_regression_not_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(regression, "EXACT_MAX_ITEMS", 5)
    monkeypatch.setattr(regression, "FACTOR_RANK", 4)
    stats = _stats()
    assert stats.regression_summary["kind"] == "low_rank"
    assert stats.regression_summary["rank"] == 4
    assert stats.regression.nnz == 0 and stats.regression_factors.shape == (13, 4)
    learner = LearnerState(history=np.array([1, 2]), strengths=np.ones(2, np.float32))
    candidates = np.array([3, 4, 7])
    features = ranking_features(stats, learner, candidates, np.zeros(3, np.float32))
    f, scale = stats.regression_factors, stats.regression_scale
    expected = f[candidates] @ (f[1] + f[2]) * scale[candidates]
    np.testing.assert_allclose(features[:, SCORE], expected, rtol=1e-5)
    assert not np.isnan(features[:, SCORE]).any()
    # The bundle keeps the factors: a loaded copy scores the same.
    stats.save(tmp_path / "stats.npz")
    loaded = ItemStats.load(tmp_path / "stats.npz")
    again = ranking_features(loaded, learner, candidates, np.zeros(3, np.float32))
    np.testing.assert_array_equal(again[:, SCORE], features[:, SCORE])


def test_statistics_saved_before_the_low_rank_form_still_load(tmp_path: Path) -> None:
    stats = _stats()
    path = tmp_path / "old.npz"
    stats.save(path)
    with np.load(path) as data:
        older = {
            k: data[k] for k in data.files if k not in {"regression_factors", "regression_scale"}
        }
    np.savez(tmp_path / "older.npz", **older)
    loaded = ItemStats.load(tmp_path / "older.npz")
    assert loaded.regression.nnz == stats.regression.nnz and loaded.regression_factors.size == 0


def test_the_strength_is_chosen_on_held_out_interactions() -> None:
    stats = _stats(strengths=(0.5, 50.0, 5000.0))
    search = stats.regression_summary["search"]
    assert [s["strength"] for s in search] == [0.5, 50.0, 5000.0]
    best = max(search, key=lambda s: s["ndcg@10"])["strength"]
    assert stats.regression_summary["strength"] == best
