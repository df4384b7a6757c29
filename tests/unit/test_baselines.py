"""EASE and implicit ALS: the closed form, its low-rank form, tuning on validation only."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from learnrec.evaluation.baselines import rank_baselines
from learnrec.features.regression import fit_regression, holdout, ndcg_at_k
from learnrec.pipeline.gate import decide


def _matrix(rows: list[list[int]]) -> sparse.csr_matrix:
    return sparse.csr_matrix(np.asarray(rows, dtype=np.float32))


def test_ease_on_a_hand_checkable_matrix_is_the_closed_form() -> None:
    # Gram [[2, 1], [1, 2]]; with λ = 1, B_01 = G_01 / (G_00 + λ) = 1/3, and so is B_10.
    regression = fit_regression(_matrix([[1, 1], [1, 0], [0, 1]]), strengths=[1.0])
    assert regression.kind == "exact" and regression.strength == 1.0
    assert regression.weights is not None
    np.testing.assert_allclose(regression.weights, [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-6)


def test_ease_equals_steck_formula_on_a_random_matrix() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    strength = 7.0
    inverse = np.linalg.inv(x.T @ x + strength * np.eye(12))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    regression = fit_regression(sparse.csr_matrix(x), strengths=[strength])
    assert regression.weights is not None
    np.testing.assert_allclose(regression.weights, expected, atol=1e-5)
    assert (regression.weights < 0).any()  # negative weights are part of the answer


def test_the_low_rank_form_is_exact_when_the_gram_matrix_has_that_rank() -> None:
    # Three kinds of learner over eight items: the Gram matrix has rank 3, so keeping
    # three eigenpairs loses nothing and every off-history score matches the inverse.
    kinds = [[1, 1, 0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 1]]
    x = _matrix([kinds[i % 3] for i in range(30)])
    exact = fit_regression(x, strengths=[5.0])
    low = fit_regression(x, strengths=[5.0], exact_max_items=0, rank=3)
    assert exact.kind == "exact" and low.kind == "low_rank"
    assert low.factors is not None and low.factors.shape == (8, 3)
    probe = _matrix([[1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1, 0, 0]])
    unseen = probe.toarray() == 0
    np.testing.assert_allclose(low.scores(probe)[unseen], exact.scores(probe)[unseen], atol=1e-4)


def test_the_strength_is_the_one_that_ranks_best_on_the_held_out_split() -> None:
    rng = np.random.default_rng(0)
    x = sparse.csr_matrix((rng.random((200, 30)) < 0.2).astype(np.float32))
    grid = [0.1, 10.0, 1000.0]
    regression = fit_regression(x, strengths=grid, seed=1)
    assert [s["strength"] for s in regression.search] == grid
    best = max(regression.search, key=lambda s: s["ndcg@10"])
    assert regression.strength == best["strength"]
    assert regression.summary()["strength"] == best["strength"]


def test_holdout_keeps_and_hides_something_of_every_learner_with_two_items() -> None:
    x = _matrix([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 1, 1, 0, 0]])
    kept, held = holdout(x, fraction=0.4, seed=0)
    assert (kept + held).toarray().tolist() == x.toarray().tolist()
    assert np.diff(held.indptr).tolist() == [2, 0, 1]
    assert (np.diff(kept.indptr) >= 1).all()


def test_ndcg_at_k_skips_seen_items_and_normalises_by_what_can_be_found() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.0]])
    seen = _matrix([[1, 0, 0, 0]])
    relevant = _matrix([[0, 1, 0, 0]])
    assert ndcg_at_k(scores, seen, relevant, 2) == pytest.approx(1.0)
    late = _matrix([[0, 0, 1, 0]])
    assert ndcg_at_k(scores, seen, late, 2) == pytest.approx(1 / np.log2(3))


def _clustered(users: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two groups of learners, each engaging with its own half of 20 items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        offset = 0 if u % 2 else 10
        for item in rng.choice(10, 5, replace=False):
            rows.append({"user_id": f"u{u}", "content_id": f"i{offset + item}", "ts": 0})
    return pd.DataFrame(rows)


def test_both_baselines_rank_unseen_items_of_the_learners_own_group() -> None:
    train = _clustered()
    items = [f"i{j}" for j in range(20)]
    users = ["u0", "u1", "nobody"]
    result = rank_baselines(train, items, users, k=3, seed=4, als_budget_s=0.0)
    assert set(result.rankings) == {"ease", "als"} and not result.unavailable
    seen = train.groupby("user_id")["content_id"].agg(set)
    for name, lists in result.rankings.items():
        assert lists["nobody"] == []  # no history: nothing to go on, nothing made up
        for user, group in (("u0", 10), ("u1", 0)):
            picks = lists[user]
            assert len(picks) == 3 and not set(picks) & seen[user], name
            assert all(group <= int(p[1:]) < group + 10 for p in picks), (name, picks)
    assert result.params["ease"]["kind"] == "exact" and result.params["ease"]["search"]
    als = result.params["als"]
    assert {"factors", "regularization", "alpha", "iterations", "trials"} <= set(als)
    assert als["trials"] >= 1


def test_a_missing_als_library_is_reported_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)
    result = rank_baselines(_clustered(), [f"i{j}" for j in range(20)], ["u0"], k=3)
    assert set(result.rankings) == {"ease"}
    assert "implicit" in result.unavailable["als"]


def test_the_gate_refuses_a_candidate_below_the_best_baseline() -> None:
    pop = {"ndcg@10": 0.20}
    baselines = {"ease": {"ndcg@10": 0.40}, "als": {"ndcg@10": 0.38}}
    refused = decide("ndcg@10", {"ndcg@10": 0.35}, pop, None, 0.01, None, baselines, 0.02)
    assert not refused.passed
    assert "worse than the best baseline, ease (0.4000)" in refused.reason
    close = decide("ndcg@10", {"ndcg@10": 0.385}, pop, None, 0.01, None, baselines, 0.02)
    assert close.passed and "within 0.02 of or better than ease" in close.reason
    # Still compared with the active model after the baselines.
    active = decide("ndcg@10", {"ndcg@10": 0.41}, pop, {"ndcg@10": 0.45}, 0.01, "v1", baselines)
    assert not active.passed and "active model v1" in active.reason


def test_ranker_folds_are_balanced_seeded_and_independent_of_order() -> None:
    from learnrec.training.ranking import assign_folds

    users = [f"u{i}" for i in range(10)]
    folds = assign_folds(users, 3, seed=7)
    assert folds == assign_folds(list(reversed(users)), 3, seed=7)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [3, 3, 4]
    assert folds != assign_folds(users, 3, seed=8)
