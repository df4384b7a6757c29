"""Offline comparison of popularity, EASE, ALS, two-tower, and two-tower + ranker on held-out data.

The split is per learner; the training part is split again, the same way, into what
the ranker learns to find (``labels``) and the rest (``fit``). The ranker's candidates
come from cross-fitted retrieval models (each trained on everything but one fold of
learners' labels), so the served retrieval model learns from the whole training part
instead of leaving the ranker's answers out. Evaluation then gives every model the
learner's whole training history and asks for k items the learner has not engaged with
yet, exactly as serving would. The classic baselines (:mod:`learnrec.evaluation.baselines`)
learn from the whole training part and tune themselves on a split of it, never on the
test part.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnrec.bundle import SPACE_FILE, STATS_FILE
from learnrec.data.dataset import Dataset, SplitName, split_interactions
from learnrec.data.generator import click_probability
from learnrec.evaluation.baselines import BASELINES, rank_baselines
from learnrec.evaluation.exposure import hold_out_items
from learnrec.evaluation.metrics import evaluate_rankings
from learnrec.features.ranking import FEATURE_NAMES, ItemStats
from learnrec.features.space import FeatureSpace
from learnrec.ranking.model import Ranker, RankerParams
from learnrec.training.inputs import Histories
from learnrec.training.ranking import (
    assign_folds,
    candidates_for,
    feature_matrix,
    train_ranking,
)
from learnrec.training.retrieval import RetrievalParams, train_retrieval

RANKER_FRACTION = 0.2
CROSS_FIT_FOLDS = 3
# The towers' regularisation and softmax temperature, tried on the first cross-fitting
# fold (its held-out ranker labels are the validation data); epochs are chosen inside
# each fit by early stopping. The defaults come first, so a tie keeps them. Opt-in
# (``learnrec benchmark quality --tune-towers``): on the sample and MOOCCube data the
# choice moved the final ranker by less than the run-to-run noise, for six extra fits.
TOWER_SEARCH: tuple[dict[str, float], ...] = (
    {"l2": 1e-6, "temperature": 0.05},
    {"l2": 1e-6, "temperature": 0.1},
    {"l2": 1e-4, "temperature": 0.05},
    {"l2": 1e-4, "temperature": 0.1},
    {"l2": 1e-3, "temperature": 0.1},
    {"l2": 1e-3, "temperature": 0.2},
)


@dataclass
class OfflineResult:
    metrics: dict[str, Any]
    score_samples: dict[str, np.ndarray] = field(default_factory=dict)
    # The interactions the models were trained and scored on (after any hold-out).
    train: pd.DataFrame | None = None
    test: pd.DataFrame | None = None


@dataclass(frozen=True)
class BundleRankings:
    """A bundle's top-k lists per learner: in retrieval order, and re-ranked, with the
    scores of the listed items (flattened over learners) for distribution plots."""

    retrieval: dict[str, list[str]]
    reranked: dict[str, list[str]]
    retrieval_scores: np.ndarray
    ranker_scores: np.ndarray
    # Per ranking feature, each learner's top k by that feature alone, in both directions.
    by_feature: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def rank_with_bundle(
    bundle_dir: Path,
    dataset: Dataset,
    histories: Histories,
    users: list[str],
    k: int,
    candidates: int,
    progress: bool = False,
    by_feature: bool = False,
) -> BundleRankings:
    """Retrieval, then the ranker, for each learner given their history, as serving
    would; the one scoring loop offline evaluation and the pipeline's gate share.

    ``by_feature`` also ranks the candidates by each ranking feature alone (highest
    first as ``+name``, lowest first as ``-name``; missing values last), the check that
    the ranker adds to its features rather than averaging them away.
    """
    space = FeatureSpace.load(bundle_dir / SPACE_FILE)
    stats = ItemStats.load(bundle_dir / STATS_FILE)
    ranker = Ranker.load(bundle_dir)
    found, scores = candidates_for(bundle_dir, space, dataset, histories, users, candidates)
    blocks = feature_matrix(stats, space, dataset, histories, users, found, scores, progress)
    retrieval: dict[str, list[str]] = {}
    reranked: dict[str, list[str]] = {}
    retrieval_scores, ranker_scores = [], []
    single: dict[str, dict[str, list[str]]] = {}
    if by_feature:
        single = {f"{sign}{name}": {} for name in FEATURE_NAMES for sign in "+-"}
    for row, user in enumerate(users):
        valid = found[row] != 0
        items = found[row][valid]
        retrieval[user] = [space.items.key(int(i)) for i in items[:k]]
        retrieval_scores.append(scores[row][valid][:k])
        ranked = ranker.score(blocks[row]) if len(items) else np.zeros(0, np.float32)
        order = np.argsort(-ranked, kind="stable")[:k]
        reranked[user] = [space.items.key(int(i)) for i in items[order]]
        ranker_scores.append(ranked[order])
        for column, name in enumerate(FEATURE_NAMES) if by_feature else ():
            values = blocks[row][:, column].astype(np.float64)
            for sign, direction in (("+", -1.0), ("-", 1.0)):
                keyed = np.where(np.isnan(values), np.inf, direction * values)
                picks = np.argsort(keyed, kind="stable")[:k]
                single[f"{sign}{name}"][user] = [space.items.key(int(i)) for i in items[picks]]
    return BundleRankings(
        retrieval,
        reranked,
        np.concatenate(retrieval_scores) if retrieval_scores else np.zeros(0),
        np.concatenate(ranker_scores) if ranker_scores else np.zeros(0),
        single,
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
    cross_fit_folds: int = CROSS_FIT_FOLDS,
    tower_search: Sequence[Mapping[str, float]] = (),
    new_item_fraction: float = 0.0,
) -> OfflineResult:
    """Train every model on the training part and score them all on the test part.

    ``tower_search`` (with cross-fitting) are retrieval parameter overrides tried on the
    first fold; the best on that fold's held-out labels trains every other model.
    ``new_item_fraction`` of the test's items lose their training interactions, to stand
    in for items added after training (:func:`learnrec.evaluation.exposure.hold_out_items`).
    """
    timings: dict[str, float] = {}
    tower_trials: list[dict[str, Any]] = []
    ranker_params = ranker_params or RankerParams(seed=seed)
    retrieval_params = retrieval_params or RetrievalParams(seed=seed)
    parts = split_interactions(dataset.interactions, split, test_fraction, seed)
    train, held_out = hold_out_items(parts.train, parts.test, new_item_fraction, seed)
    test = parts.test
    inner = split_interactions(train, split, RANKER_FRACTION, seed + 1)
    with tempfile.TemporaryDirectory(prefix="learnrec-folds-") as scratch:
        fold_models: list[Path] = []
        if cross_fit_folds > 1:
            fold_of = assign_folds(
                list(inner.test["user_id"].unique()), cross_fit_folds, ranker_params.seed
            )
            held_fold = inner.test["user_id"].map(fold_of).to_numpy()
            for fold in range(cross_fit_folds):
                fold_dir = Path(scratch) / f"fold{fold}"
                fold_fit = pd.concat([inner.train, inner.test[held_fold != fold]])
                started = time.perf_counter()
                if fold == 0 and len(tower_search) > 1:
                    retrieval_params, fold_dir, tower_trials = _choose_towers(
                        dataset,
                        fold_fit,
                        inner.train,
                        inner.test[held_fold == fold],
                        retrieval_params,
                        tower_search,
                        k,
                        Path(scratch),
                        progress,
                    )
                else:
                    train_retrieval(dataset, fold_fit, fold_dir, retrieval_params, progress)
                timings[f"train_retrieval_fold{fold}"] = round(time.perf_counter() - started, 3)
                fold_models.append(fold_dir)
        served = train if fold_models else inner.train
        _timed(
            timings,
            "train_retrieval",
            lambda: train_retrieval(dataset, served, bundle_dir, retrieval_params, progress),
        )
        _timed(
            timings,
            "train_ranking",
            lambda: train_ranking(
                dataset,
                inner.train,
                inner.test,
                bundle_dir,
                bundle_dir,
                ranker_params,
                progress,
                fold_models,
            ),
        )

    started = time.perf_counter()
    relevant = {str(u): set(g) for u, g in test.groupby("user_id")["content_id"]}
    users = sorted(relevant)
    histories = Histories.of(train)
    ranked = rank_with_bundle(
        bundle_dir, dataset, histories, users, k, ranker_params.candidates, progress, True
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
    features_alone = _features_alone(ranked.by_feature, relevant, k, catalog_size)
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
        "ranker_features_alone": features_alone,
        "cross_fit_folds": cross_fit_folds,
        "retrieval_search": tower_trials,
        "new_item_fraction": new_item_fraction,
        "held_out_new_items": len(held_out),
        "timings_s": timings,
    }
    samples = {
        "two_tower": ranked.retrieval_scores,
        "two_tower_ranker": ranked.ranker_scores,
    }
    return OfflineResult(metrics=metrics, score_samples=samples, train=train, test=test)


def _choose_towers(
    dataset: Dataset,
    fit: pd.DataFrame,
    histories_from: pd.DataFrame,
    held: pd.DataFrame,
    base: RetrievalParams,
    search: Sequence[Mapping[str, float]],
    k: int,
    scratch: Path,
    progress: bool,
) -> tuple[RetrievalParams, Path, list[dict[str, Any]]]:
    """Train the towers with each of ``search`` on ``fit``; keep the one whose retrieval
    ranks ``held`` best (ndcg@k, learners' history from ``histories_from``)."""
    relevant = {str(u): set(g) for u, g in held.groupby("user_id")["content_id"]}
    histories = Histories.of(histories_from)
    users = sorted(u for u in relevant if histories.get(u))
    trials: list[dict[str, Any]] = []
    best: tuple[float, RetrievalParams, Path] | None = None
    for number, overrides in enumerate(search):
        params = RetrievalParams(**{**asdict(base), **overrides})
        model_dir = scratch / f"towers{number}"
        summary = train_retrieval(dataset, fit, model_dir, params, progress)
        space = FeatureSpace.load(model_dir / SPACE_FILE)
        found, _ = candidates_for(model_dir, space, dataset, histories, users, k)
        lists = {
            user: [space.items.key(int(i)) for i in row if i != 0]
            for user, row in zip(users, found, strict=True)
        }
        score = evaluate_rankings(lists, relevant, k, len(dataset.items))[f"ndcg@{k}"]
        trials.append({**overrides, "epochs_run": summary["epochs_run"], f"ndcg@{k}": score})
        if best is None or score > best[0]:
            best = (score, params, model_dir)
    assert best is not None
    return best[1], best[2], trials


def _features_alone(
    by_feature: dict[str, dict[str, list[str]]],
    relevant: dict[str, set[str]],
    k: int,
    catalog_size: int,
) -> dict[str, dict[str, Any]]:
    """NDCG@k of re-ranking the candidates by each feature alone, in its better direction.

    The direction is picked on the test learners themselves, which flatters the single
    features: a ranker that beats them all still adds something of its own.
    """
    metric = f"ndcg@{k}"
    out: dict[str, dict[str, Any]] = {}
    for name in FEATURE_NAMES:
        found = {
            sign: evaluate_rankings(by_feature[f"{sign}{name}"], relevant, k, catalog_size)[metric]
            for sign in "+-"
            if f"{sign}{name}" in by_feature
        }
        if found:
            sign = max(found, key=lambda s: found[s])
            out[name] = {
                metric: found[sign],
                "order": "highest first" if sign == "+" else "lowest first",
            }
    return out


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
