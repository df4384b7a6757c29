"""Train the XGBoost re-ranker on the retrieval model's own candidates.

The ranker must learn what the two-tower misses, so it is trained the way it will be
used: for each learner, the retrieval model proposes TOP_K_RETRIEVAL candidates from
their history (``fit`` interactions), and the items the learner went on to engage with
(``labels``, held out of the retrieval job's training data) are the positives. Catalog
statistics for training come from ``fit`` alone, as serving's come from all it knows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from learnrec.bundle import BundleLayout
from learnrec.data.dataset import Dataset
from learnrec.features.ranking import FEATURE_NAMES, ItemStats, ranking_features
from learnrec.features.regression import STRENGTH_GRID
from learnrec.features.space import FeatureSpace
from learnrec.ranking.model import RankerParams, fit_ranker
from learnrec.retrieval.candidates import top_k
from learnrec.retrieval.onnx_runtime import OnnxTowers
from learnrec.training.inputs import (
    Histories,
    declared_profiles,
    encode_users,
    item_stats_for,
    learner_state,
    profile_tokens,
)


def candidates_for(
    model_dir: Path,
    space: FeatureSpace,
    dataset: Dataset,
    histories: Histories,
    user_ids: list[str],
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k retrieval candidates (item indices, scores) for learners, history excluded."""
    towers = OnnxTowers(model_dir, threads=0)
    inputs = encode_users(space, user_ids, histories, profile_tokens(dataset.learners))
    vectors = towers.users_batched(inputs["user_idx"], inputs["history"], inputs["user_features"])
    items = np.load(BundleLayout(model_dir).embeddings)
    exclude = [space.items.lookup(histories.get(u)) for u in user_ids]
    return top_k(vectors, items, exclude, k)


def feature_matrix(
    stats: ItemStats,
    space: FeatureSpace,
    dataset: Dataset,
    histories: Histories,
    user_ids: list[str],
    candidates: np.ndarray,
    scores: np.ndarray,
    progress: bool = False,
) -> list[np.ndarray]:
    """Per learner, the ranking features of their candidates (``ranking_features``)."""
    declared = declared_profiles(dataset.learners)
    out = []
    for row, user in enumerate(tqdm(user_ids, desc="ranking features", disable=not progress)):
        valid = candidates[row] != 0
        state = learner_state(space, histories, declared, user)
        out.append(ranking_features(stats, state, candidates[row][valid], scores[row][valid]))
    return out


def assign_folds(user_ids: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Each learner's fold, balanced and seeded; the same for the same learners wherever
    it is asked (the cross-fitted retrieval models and the ranker's statistics agree)."""
    ordered = sorted(set(user_ids))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[i]: int(position % folds) for position, i in enumerate(order)}


def train_ranking(
    dataset: Dataset,
    fit: pd.DataFrame,
    labels: pd.DataFrame,
    model_dir: Path,
    out_dir: Path,
    params: RankerParams | None = None,
    progress: bool = True,
    fold_models: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train the ranker over ``model_dir``'s retrieval model; write it to ``out_dir``.

    Serving's catalog statistics (popularity, item-item similarity) come from ``fit``
    and ``labels`` together, everything seen so far; they go to the bundle's item stats.
    Training features must not see a learner's own held-out items in them (the ranker
    would learn to spot its answers), yet should be computed from about as much data as
    serving's are, or the ranker learns to distrust them. So learners are split into
    folds, and each fold's features use statistics from all data except that fold's
    held-out interactions.

    With ``fold_models`` (cross-fitting), fold f's learners get their candidates from
    ``fold_models[f]``, a retrieval model trained on everything but their own held-out
    interactions, so ``model_dir``'s model can learn from all of ``fit`` and ``labels``
    instead of leaving the ranker's answers out; the folds of the statistics are the
    same folds.
    """
    params = params or RankerParams()
    started = time.perf_counter()
    space = FeatureSpace.load(BundleLayout(model_dir).space)
    histories = Histories.of(fit)
    wanted = labels.groupby("user_id")["content_id"].agg(set)
    user_ids = [u for u in wanted.index if histories.get(u)]
    if not user_ids:
        raise ValueError("no learner has both history and held-out interactions to rank")
    folds = len(fold_models) or params.folds
    fold_index = assign_folds(user_ids, folds, params.seed)
    fold_of = np.array([fold_index[u] for u in user_ids])
    if fold_models:
        width = max(0, min(params.candidates, space.items.size - 1))
        candidates = np.zeros((len(user_ids), width), dtype=np.int64)
        scores = np.full((len(user_ids), width), -np.inf, dtype=np.float32)
        for fold, fold_dir in enumerate(fold_models):
            members = np.flatnonzero(fold_of == fold)
            found, found_scores = candidates_for(
                fold_dir,
                FeatureSpace.load(BundleLayout(fold_dir).space),
                dataset,
                histories,
                [user_ids[i] for i in members],
                params.candidates,
            )
            candidates[members] = found
            scores[members] = found_scores
    else:
        candidates, scores = candidates_for(
            model_dir, space, dataset, histories, user_ids, params.candidates
        )
    # Serving's statistics first: the item regression's strength is chosen there, on a
    # held-out split of everything seen, and the folds' statistics reuse it.
    all_seen = pd.concat([fit, labels], ignore_index=True)
    serving_stats = item_stats_for(space, dataset, all_seen, seed=params.seed)
    strength = [serving_stats.regression_summary.get("strength", STRENGTH_GRID[0])]
    blocks: list[np.ndarray] = [np.zeros((0, len(FEATURE_NAMES)), np.float32)] * len(user_ids)
    for fold in range(folds):
        members = np.flatnonzero(fold_of == fold)
        if not len(members):
            continue
        fold_users = {user_ids[i] for i in members}
        seen = pd.concat([fit, labels[~labels["user_id"].isin(fold_users)]], ignore_index=True)
        stats = item_stats_for(space, dataset, seen, strength)
        fold_blocks = feature_matrix(
            stats,
            space,
            dataset,
            histories,
            [user_ids[i] for i in members],
            candidates[members],
            scores[members],
            progress,
        )
        for i, block in zip(members, fold_blocks, strict=True):
            blocks[i] = block
    rows, targets, groups = [], [], []
    recall_hits = recall_total = 0
    for row, user in enumerate(user_ids):
        positives = space.items.lookup(sorted(wanted[user]))
        label = np.isin(candidates[row][candidates[row] != 0], positives).astype(np.float32)
        recall_hits += int(label.sum())
        recall_total += len(positives)
        if label.any() and not label.all():  # a group without contrast teaches nothing
            rows.append(blocks[row])
            targets.append(label)
            groups.append(len(label))
    if not rows:
        raise ValueError("retrieval found none of the held-out items: nothing to train a ranker on")
    ranker = fit_ranker(np.vstack(rows), np.concatenate(targets), np.asarray(groups), params)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "params": asdict(params),
        "features": list(FEATURE_NAMES),
        "groups": len(groups),
        "rounds": ranker.num_boosted_rounds(),
        "rows": int(sum(groups)),
        "candidate_recall": recall_hits / max(1, recall_total),
        "cross_fitted_folds": len(fold_models),
        "regression": serving_stats.regression_summary,
        "timings_s": {"total": time.perf_counter() - started},
    }
    ranker.save(out_dir, summary)
    layout = BundleLayout(out_dir)
    serving_stats.save(layout.stats)
    layout.ranking_summary.write_text(json.dumps(summary, indent=2))
    return summary
