"""Hand-computed checks of the ranking metrics; the arithmetic is written out so a reviewer
can verify each expected value without running anything."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from learnrec.evaluation.metrics import (
    average_precision_at_k,
    coverage_at_k,
    evaluate_rankings,
    ndcg_at_k,
    paired_bootstrap_ci,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
)

LOG2 = math.log2


def test_precision_recall_and_ap_on_a_small_case() -> None:
    recs = ["a", "b", "c", "d"]
    rel = {"a", "c"}
    # top-3 = [a, b, c]; hits at ranks 1 and 3.
    # P@3 = 2 hits / 3
    assert precision_at_k(recs, rel, 3) == pytest.approx(2 / 3)
    # R@3 = 2 hits / 2 relevant
    assert recall_at_k(recs, rel, 3) == pytest.approx(1.0)
    # AP@3 = (P@1 + P@3) / min(3, 2) = (1/1 + 2/3) / 2
    assert average_precision_at_k(recs, rel, 3) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # DCG = 1/log2(2) + 1/log2(4); IDCG = 1/log2(2) + 1/log2(3) (two relevant at the top)
    expected = (1 + 1 / LOG2(4)) / (1 + 1 / LOG2(3))
    assert ndcg_at_k(recs, rel, 3) == pytest.approx(expected)


def test_no_hits_scores_zero() -> None:
    recs = ["x", "y", "z"]
    rel = {"a"}
    assert precision_at_k(recs, rel, 3) == 0.0
    assert recall_at_k(recs, rel, 3) == 0.0
    assert ndcg_at_k(recs, rel, 3) == 0.0
    assert average_precision_at_k(recs, rel, 3) == 0.0


def test_perfect_list_scores_one() -> None:
    recs = ["a", "b", "x"]
    rel = {"a", "b"}
    # P@2 = 2/2, R@2 = 2/2, AP = (1/1 + 2/2)/2, NDCG = IDCG/IDCG
    for fn in (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k):
        assert fn(recs, rel, 2) == pytest.approx(1.0)


def test_fewer_recommendations_than_k() -> None:
    recs = ["a"]
    rel = {"a", "b"}
    # P@5 still divides by k: 1 hit / 5 slots
    assert precision_at_k(recs, rel, 5) == pytest.approx(1 / 5)
    # R@5 = 1 / 2
    assert recall_at_k(recs, rel, 5) == pytest.approx(1 / 2)
    # AP@5 = P@1 / min(5, 2) = 1 / 2
    assert average_precision_at_k(recs, rel, 5) == pytest.approx(1 / 2)
    # DCG = 1/log2(2) = 1; IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(recs, rel, 5) == pytest.approx(1 / (1 + 1 / LOG2(3)))


def test_relevant_larger_than_k_normalises_by_k() -> None:
    recs = ["a", "x", "b"]
    rel = {"a", "b", "c", "d", "e"}
    k = 2
    # top-2 = [a, x]: one hit at rank 1.
    # R@2 = 1 / 5 (recall keeps |relevant| as denominator)
    assert recall_at_k(recs, rel, k) == pytest.approx(1 / 5)
    # AP@2 = P@1 / min(2, 5) = 1 / 2
    assert average_precision_at_k(recs, rel, k) == pytest.approx(1 / 2)
    # IDCG uses min(2, 5) = 2 ideal hits: 1 + 1/log2(3); DCG = 1
    assert ndcg_at_k(recs, rel, k) == pytest.approx(1 / (1 + 1 / LOG2(3)))
    # A list of only relevant items must reach 1.0 although 3 relevant items do not fit.
    assert average_precision_at_k(["a", "b"], rel, k) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b"], rel, k) == pytest.approx(1.0)


def test_items_beyond_k_are_ignored() -> None:
    # The hit at rank 4 falls outside k=3.
    assert precision_at_k(["x", "y", "z", "a"], {"a"}, 3) == 0.0
    assert ndcg_at_k(["x", "y", "z", "a"], {"a"}, 3) == 0.0


def test_late_hit_ap_and_ndcg() -> None:
    recs = ["x", "a", "y", "b"]
    rel = {"a", "b", "c"}
    k = 4
    # hits at ranks 2 and 4: AP = (P@2 + P@4) / min(4, 3) = (1/2 + 2/4) / 3
    assert average_precision_at_k(recs, rel, k) == pytest.approx((1 / 2 + 2 / 4) / 3)
    # DCG = 1/log2(3) + 1/log2(5); IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 1 / LOG2(3) + 1 / LOG2(5)
    idcg = 1 + 1 / LOG2(3) + 1 / LOG2(4)
    assert ndcg_at_k(recs, rel, k) == pytest.approx(dcg / idcg)


def test_empty_relevant_scores_zero_per_user() -> None:
    assert recall_at_k(["a"], set(), 1) == 0.0
    assert ndcg_at_k(["a"], set(), 1) == 0.0
    assert average_precision_at_k(["a"], [], 1) == 0.0


def test_duplicates_raise() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        precision_at_k(["a", "b", "a"], {"a"}, 3)
    # Also beyond k and for users that are not evaluated: still a model bug.
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_rankings({"u": ["a", "b", "c", "a"]}, {"u": {"a"}}, k=2, catalog_size=4)
    with pytest.raises(ValueError, match="'v'"):
        evaluate_rankings({"u": ["a"], "v": ["b", "b"]}, {"u": {"a"}}, k=2, catalog_size=4)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError, match="catalog_size"):
        evaluate_rankings({"u": ["a"]}, {"u": {"a"}}, k=1, catalog_size=0)


def test_evaluate_rankings_averages_and_users_without_recommendations() -> None:
    recommendations = {
        "u1": ["a", "b", "c", "d"],  # relevant {a, c}: the small case above, at k=3
        "u2": ["x", "y"],  # relevant {y}: one hit at rank 2
        "u4": ["a", "z"],  # not in relevant: ignored for accuracy, counted for coverage
    }
    relevant: dict[str, set[str]] = {
        "u1": {"a", "c"},
        "u2": {"y"},
        "u3": {"q"},  # no recommendations: zero scores but counted
        "u5": set(),  # nothing relevant: not evaluated
    }
    result = evaluate_rankings(recommendations, relevant, k=3, catalog_size=10)
    assert set(result) == {
        "precision@3",
        "recall@3",
        "ndcg@3",
        "map@3",
        "coverage@3",
        "users",
    }
    assert result["users"] == 3.0
    # precision: u1 = 2/3, u2 = 1/3, u3 = 0 -> mean = (2/3 + 1/3 + 0) / 3 = 1/3
    assert result["precision@3"] == pytest.approx(1 / 3)
    # recall: u1 = 1, u2 = 1, u3 = 0 -> 2/3
    assert result["recall@3"] == pytest.approx(2 / 3)
    # map: u1 = (1 + 2/3)/2 = 5/6, u2 = P@2 / min(3, 1) = 1/2, u3 = 0 -> (5/6 + 1/2) / 3
    assert result["map@3"] == pytest.approx((5 / 6 + 1 / 2) / 3)
    # ndcg: u1 as in the small case, u2 = (1/log2(3)) / 1, u3 = 0
    u1 = (1 + 1 / LOG2(4)) / (1 + 1 / LOG2(3))
    u2 = 1 / LOG2(3)
    assert result["ndcg@3"] == pytest.approx((u1 + u2) / 3)
    # coverage: top-3 union = {a, b, c} | {x, y} | {a, z} = 6 items of 10
    assert result["coverage@3"] == pytest.approx(6 / 10)


def test_evaluate_rankings_with_no_evaluable_users_is_zero_not_nan() -> None:
    result = evaluate_rankings({"u": ["a"]}, {"u": set()}, k=5, catalog_size=2)
    assert result["users"] == 0.0
    assert result["precision@5"] == 0.0
    assert result["coverage@5"] == pytest.approx(1 / 2)


def test_relevant_accepts_any_collection() -> None:
    # Lists with repeats count each item once: |relevant| = 2.
    assert recall_at_k(["a"], ["a", "b", "b"], 1) == pytest.approx(1 / 2)
    result = evaluate_rankings({"u": ["a"]}, {"u": ("a", "b")}, k=1, catalog_size=5)
    assert result["recall@1"] == pytest.approx(1 / 2)


def test_coverage_only_counts_top_k() -> None:
    recs = {"u1": ["a", "b", "c"], "u2": ["a", "d"]}
    # top-1 lists: {a} | {a} = 1 item; top-2: {a, b, d} = 3 items
    assert coverage_at_k(recs, 1, 4) == pytest.approx(1 / 4)
    assert coverage_at_k(recs, 2, 4) == pytest.approx(3 / 4)
    assert coverage_at_k({}, 2, 4) == 0.0


def test_per_user_matches_scalar_functions() -> None:
    recs = {"u1": ["a", "b", "c", "d"], "u2": ["x", "y"]}
    rel = {"u2": {"y"}, "u1": {"a", "c"}}
    per_user = per_user_metrics(recs, rel, k=3)
    assert per_user.users == ("u2", "u1")  # relevant order, for pairing across models
    assert per_user.scores["precision@3"][1] == pytest.approx(
        precision_at_k(recs["u1"], rel["u1"], 3)
    )
    assert per_user.scores["ndcg@3"][0] == pytest.approx(ndcg_at_k(recs["u2"], rel["u2"], 3))


def test_ten_thousand_users_is_fast() -> None:
    rng = np.random.default_rng(0)
    n_items, k = 2_000, 10
    items = [f"i{j}" for j in range(n_items)]
    recommendations: dict[str, list[str]] = {}
    relevant: dict[str, set[str]] = {}
    for u in range(10_000):
        picks = rng.choice(n_items, size=k + 5, replace=False)
        recommendations[f"u{u}"] = [items[j] for j in picks[:k]]
        relevant[f"u{u}"] = {items[j] for j in picks[k - 3 :]}
    start = time.perf_counter()
    result = evaluate_rankings(recommendations, relevant, k=k, catalog_size=n_items)
    elapsed = time.perf_counter() - start
    assert result["users"] == 10_000.0
    # Each user: relevant = ranks 8, 9, 10 plus 5 unrecommended -> 3 hits, P = 3/10.
    assert result["precision@10"] == pytest.approx(0.3)
    assert result["recall@10"] == pytest.approx(3 / 8)
    assert elapsed < 1.0


def test_paired_bootstrap_ci_brackets_the_mean_difference() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(500)
    better = base + 0.1 + rng.normal(0, 0.01, 500)
    mean, low, high = paired_bootstrap_ci(better, base, n_resamples=300, seed=3)
    assert low < mean < high
    assert mean == pytest.approx(0.1, abs=0.01)
    assert low > 0.0  # paired: tiny noise, so the interval excludes zero
    assert paired_bootstrap_ci(better, base, n_resamples=300, seed=3) == (mean, low, high)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
