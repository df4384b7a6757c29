"""Offline comparison of popularity, EASE, ALS, two-tower, and two-tower + ranker on held-out data.

The split is per learner; the training part is split again, the same way, into what
the retrieval model learns from (``fit``) and what the ranker learns to find
(``labels``). Evaluation then gives every model the learner's whole training history and
asks for k items the learner has not engaged with yet, exactly as serving would. The
classic baselines (:mod:`learnrec.evaluation.baselines`) learn from the whole training
part and tune themselves on a split of it, never on the test part.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learnrec.bundle import SPACE_FILE, STATS_FILE
from learnrec.data.dataset import Dataset, SplitName, split_interactions
from learnrec.data.generator import click_probability
from learnrec.evaluation.baselines import BASELINES, rank_baselines
from learnrec.evaluation.metrics import evaluate_rankings
from learnrec.features.ranking import ItemStats
from learnrec.features.space import FeatureSpace
from learnrec.ranking.model import Ranker, RankerParams
from learnrec.training.inputs import Histories
from learnrec.training.ranking import candidates_for, feature_matrix, train_ranking
from learnrec.training.retrieval import RetrievalParams, train_retrieval

RANKER_FRACTION = 0.2


@dataclass
class OfflineResult:
    metrics: dict[str, Any]
    score_samples: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleRankings:
    """A bundle's top-k lists per learner: in retrieval order, and re-ranked, with the
    scores of the listed items (flattened over learners) for distribution plots."""

    retrieval: dict[str, list[str]]
    reranked: dict[str, list[str]]
    retrieval_scores: np.ndarray
    ranker_scores: np.ndarray


def rank_with_bundle(
    bundle_dir: Path,
    dataset: Dataset,
    histories: Histories,
    users: list[str],
    k: int,
    candidates: int,
    progress: bool = False,
) -> BundleRankings:
    """Retrieval, then the ranker, for each learner given their history, as serving
    would; the one scoring loop offline evaluation and the pipeline's gate share."""
    space = FeatureSpace.load(bundle_dir / SPACE_FILE)
    stats = ItemStats.load(bundle_dir / STATS_FILE)
    ranker = Ranker.load(bundle_dir)
    found, scores = candidates_for(bundle_dir, space, dataset, histories, users, candidates)
    blocks = feature_matrix(stats, space, dataset, histories, users, found, scores, progress)
    retrieval: dict[str, list[str]] = {}
    reranked: dict[str, list[str]] = {}
    retrieval_scores, ranker_scores = [], []
    for row, user in enumerate(users):
        valid = found[row] != 0
        items = found[row][valid]
        retrieval[user] = [space.items.key(int(i)) for i in items[:k]]
        retrieval_scores.append(scores[row][valid][:k])
        ranked = ranker.score(blocks[row]) if len(items) else np.zeros(0, np.float32)
        order = np.argsort(-ranked, kind="stable")[:k]
        reranked[user] = [space.items.key(int(i)) for i in items[order]]
        ranker_scores.append(ranked[order])
    return BundleRankings(
        retrieval,
        reranked,
        np.concatenate(retrieval_scores) if retrieval_scores else np.zeros(0),
        np.concatenate(ranker_scores) if ranker_scores else np.zeros(0),
    )


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - started, 3)
    return result


def evaluate_offline(
    dataset: Dataset,
    bundle_dir: Path,
    split: SplitName = "stratified",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    retrieval_params: RetrievalParams | None = None,
    ranker_params: RankerParams | None = None,
    progress: bool = True,
    baseline_names: tuple[str, ...] = BASELINES,
) -> OfflineResult:
    """Train every model on the training part and score them all on the test part."""
    timings: dict[str, float] = {}
    ranker_params = ranker_params or RankerParams(seed=seed)
    retrieval_params = retrieval_params or RetrievalParams(seed=seed)
    parts = split_interactions(dataset.interactions, split, test_fraction, seed)
    train, test = parts.train, parts.test
    inner = split_interactions(train, split, RANKER_FRACTION, seed + 1)
    _timed(
        timings,
        "train_retrieval",
        lambda: train_retrieval(dataset, inner.train, bundle_dir, retrieval_params, progress),
    )
    _timed(
        timings,
        "train_ranking",
        lambda: train_ranking(
            dataset, inner.train, inner.test, bundle_dir, bundle_dir, ranker_params, progress
        ),
    )

    started = time.perf_counter()
    relevant = {str(u): set(g) for u, g in test.groupby("user_id")["content_id"]}
    users = sorted(relevant)
    histories = Histories.of(train)
    ranked = rank_with_bundle(
        bundle_dir, dataset, histories, users, k, ranker_params.candidates, progress
    )
    two_tower, reranked = ranked.retrieval, ranked.reranked
    popular = popularity_ranking(train, histories, users, k)
    timings["evaluate"] = round(time.perf_counter() - started, 3)
    baselines = rank_baselines(
        train, list(dataset.items["content_id"]), users, k, split, seed, names=baseline_names
    )
    timings.update({f"baseline_{name}": s for name, s in baselines.timings_s.items()})

    catalog_size = len(dataset.items)
    lists = {
        "popularity": popular,
        **baselines.rankings,
        "two_tower": two_tower,
        "two_tower_ranker": reranked,
    }
    models = {
        name: evaluate_rankings(recs, relevant, k, catalog_size) for name, recs in lists.items()
    }
    for result in models.values():
        result.pop("users", None)
    if dataset.truth is not None:
        ctr = {name: simulated_ctr(dataset.truth, recs, histories) for name, recs in lists.items()}
        for name, value in ctr.items():
            models[name]["simulated_ctr"] = value
            if name != "popularity":
                models[name]["ctr_lift_vs_popularity"] = (
                    value / ctr["popularity"] - 1 if ctr["popularity"] > 0 else float("nan")
                )
    metrics = {
        "dataset": dataset.name,
        "k": k,
        "split": split,
        "test_fraction": test_fraction,
        "seed": seed,
        "n_users": len(users),
        "n_items": catalog_size,
        "n_interactions": len(dataset.interactions),
        "models": models,
        "baselines": baselines.params,
        "baselines_unavailable": baselines.unavailable,
        "timings_s": timings,
    }
    samples = {
        "two_tower": ranked.retrieval_scores,
        "two_tower_ranker": ranked.ranker_scores,
    }
    return OfflineResult(metrics=metrics, score_samples=samples)


def popularity_ranking(
    train: Any, histories: Histories, users: list[str], k: int
) -> dict[str, list[str]]:
    """The baseline: the most engaged-with items the learner has not engaged with."""
    ranked = train["content_id"].value_counts(sort=True).index.tolist()
    out: dict[str, list[str]] = {}
    for user in users:
        seen = set(histories.get(user))
        picks: list[str] = []
        for item in ranked:
            if item not in seen:
                picks.append(item)
                if len(picks) == k:
                    break
        out[user] = picks
    return out


def simulated_ctr(
    truth: dict[str, Any], recommendations: dict[str, list[str]], histories: Histories
) -> float:
    """Mean click probability of shown items under the generator's own learner model.

    The expectation is used instead of sampled clicks: the same number, without the
    sampling noise.
    """
    probabilities = [
        click_probability(truth, user, items, completed=histories.get(user))
        for user, items in recommendations.items()
        if items
    ]
    return float(np.concatenate(probabilities).mean()) if probabilities else 0.0
