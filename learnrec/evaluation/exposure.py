"""What the new-item slots cost and what they bring, measured through the serving path.

The offline rankings (:func:`learnrec.evaluation.offline.rank_with_bundle`) skip the
serving-only steps, so this comparison runs the real :class:`Recommender` over the
trained bundle and its index, once per slot count, for the same test learners: the
difference between the rows is the slots' alone. Items "new" to the model are those of
the catalog without training interactions: the few the split leaves, or those held out
with :func:`hold_out_items` to stand in for items added after training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from learnrec.data.dataset import Dataset
from learnrec.evaluation.metrics import evaluate_rankings
from learnrec.schemas import Learner
from learnrec.serving.bundle_index import load_index
from learnrec.serving.exposure import DEFAULT_NEW_ITEM_SLOTS
from learnrec.serving.recommender import HistoryItem, ModelBundle, Recommender, RecommendOptions
from learnrec.training.inputs import Histories

SLOT_COUNTS = (0, DEFAULT_NEW_ITEM_SLOTS, 2)
# Learners served per slot count: bounds the time on large data sets (seeded sample).
MAX_USERS = 3000


def hold_out_items(
    train: pd.DataFrame, test: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, list[str]]:
    """Drop every training interaction of a seeded ``fraction`` of the test's items.

    The model then meets them as it meets items added after training: in the catalog,
    with their features, without engagement; their test interactions measure whether
    anyone is shown them.
    """
    if fraction <= 0:
        return train, []
    candidates = sorted(test["content_id"].astype(str).unique())
    count = min(len(candidates), max(1, round(fraction * len(candidates))))
    chosen = np.random.default_rng(seed).choice(candidates, size=count, replace=False)
    held = sorted(str(c) for c in chosen)
    return train[~train["content_id"].astype(str).isin(held)], held


def _profiles(learners: pd.DataFrame) -> dict[str, Learner]:
    out: dict[str, Learner] = {}
    for row in learners.to_dict(orient="records"):
        known = {
            k: v
            for k, v in row.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        if "level" in known:
            known["level"] = int(known["level"])
        for key in ("interests", "goals"):
            if key in known:
                known[key] = list(known[key])
        try:
            out[str(row["user_id"])] = Learner.model_validate(known)
        except ValidationError:  # a profile serving would refuse is served as none
            continue
    return out


def exposure_comparison(
    bundle_dir: Path,
    dataset: Dataset,
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int,
    seed: int,
    slot_counts: Sequence[int] = SLOT_COUNTS,
) -> dict[str, Any]:
    """Per slot count: the test metrics of the served lists, and how new items fared.

    ``new_item_recall@k``: the share of test interactions with new items that the lists
    contain; ``new_items_shown``: the share of new items that some learner is shown.
    """
    trained = set(train["content_id"].astype(str))
    catalog = [str(c) for c in dataset.items["content_id"]]
    new = {c for c in catalog if c not in trained}
    relevant = {str(u): set(map(str, g)) for u, g in test.groupby("user_id")["content_id"]}
    users = sorted(relevant)
    if len(users) > MAX_USERS:
        users = sorted(np.random.default_rng(seed).choice(users, MAX_USERS, replace=False))
    histories = Histories.of(train)
    profiles = _profiles(dataset.learners)
    new_relevant = sum(len(relevant[u] & new) for u in users)
    rows: dict[str, Any] = {}
    for slots in slot_counts:
        recommender = Recommender(
            ModelBundle(bundle_dir, verify=False), load_index(bundle_dir), new_item_slots=slots
        )
        lists: dict[str, list[str]] = {}
        for user in users:
            history = [
                HistoryItem(c, s)
                for c, s in zip(histories.get(user), histories.strengths.get(user, []), strict=True)
            ]
            result = recommender.recommend(user, history, profiles.get(user), RecommendOptions(k=k))
            lists[user] = [r.content_id for r in result.items]
        metrics = evaluate_rankings(lists, {u: relevant[u] for u in users}, k, len(catalog))
        metrics.pop("users", None)
        hits = sum(len(set(lists[u]) & relevant[u] & new) for u in users)
        shown = set().union(*map(set, lists.values())) & new if lists else set()
        metrics[f"new_item_recall@{k}"] = hits / new_relevant if new_relevant else 0.0
        metrics["new_items_shown"] = len(shown) / len(new) if new else 0.0
        rows[str(slots)] = metrics
    return {
        "users": len(users),
        "new_items": len(new),
        "new_item_test_interactions": new_relevant,
        "by_slots": rows,
    }
