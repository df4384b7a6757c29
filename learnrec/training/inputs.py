"""From a dataset's frames to the encoded arrays that the towers and the ranker take.

Shared by the retrieval and ranking jobs and by offline evaluation, so a learner is
encoded the same way wherever a model meets them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from learnrec.data.dataset import Dataset
from learnrec.features.ranking import ItemStats, LearnerState, build_item_stats
from learnrec.features.regression import STRENGTH_GRID
from learnrec.features.space import (
    DEFAULT_HISTORY_LENGTH,
    FeatureSpace,
    encode_user_inputs,
    item_tokens,
    learner_tokens,
)


def catalog_tokens(items: pd.DataFrame) -> list[list[str]]:
    return [
        item_tokens(row.topics, row.tags, row.level, row.format)
        for row in items.itertuples(index=False)
    ]


def profile_tokens(learners: pd.DataFrame) -> dict[str, list[str]]:
    return {
        row.user_id: learner_tokens(row.interests, row.goals, row.level)
        for row in learners.itertuples(index=False)
    }


def build_space(
    dataset: Dataset, interactions: pd.DataFrame, history_length: int = DEFAULT_HISTORY_LENGTH
) -> FeatureSpace:
    """Vocabularies: users and items seen in training; tokens of the whole catalog.

    Items without interactions still get an index, so their content features and
    the id slot exist for later fine-tuning, but their id embedding stays untrained;
    their vectors come from content (item-id dropout teaches the tower to manage).
    """
    users = sorted(interactions["user_id"].unique())
    items = list(dataset.items["content_id"])
    profiles = profile_tokens(dataset.learners)
    return FeatureSpace.build(
        user_ids=users,
        item_ids=items,
        user_token_lists=profiles.values(),
        item_token_lists=catalog_tokens(dataset.items),
        history_length=history_length,
    )


@dataclass(frozen=True)
class Histories:
    """Each learner's items, oldest first, with the strength of their engagement."""

    items: dict[str, list[str]]
    strengths: dict[str, list[float]]

    @classmethod
    def of(cls, interactions: pd.DataFrame) -> Histories:
        ordered = interactions.sort_values(["user_id", "ts"], kind="stable", na_position="first")
        items: dict[str, list[str]] = {}
        strengths: dict[str, list[float]] = {}
        for user, group in ordered.groupby("user_id", sort=False):
            items[str(user)] = group["content_id"].tolist()
            strengths[str(user)] = group["weight"].astype(float).tolist()
        return cls(items, strengths)

    def get(self, user_id: str) -> list[str]:
        return self.items.get(user_id, [])


def encode_catalog(space: FeatureSpace, dataset: Dataset) -> dict[str, np.ndarray]:
    """Item-tower inputs for every vocabulary item, in index order (row i = index i+1)."""
    by_id = dataset.items.set_index("content_id")
    frame = by_id.loc[space.items.keys].reset_index()
    return {
        "item_idx": np.arange(1, space.items.size, dtype=np.int64),
        "item_features": space.encode_item_features(catalog_tokens(frame)),
    }


def encode_users(
    space: FeatureSpace,
    user_ids: Sequence[str],
    histories: Histories,
    profiles: dict[str, list[str]],
) -> dict[str, np.ndarray]:
    return encode_user_inputs(
        space,
        user_ids,
        [histories.get(u) for u in user_ids],
        [profiles.get(u, []) for u in user_ids],
    )


def item_stats_for(
    space: FeatureSpace,
    dataset: Dataset,
    interactions: pd.DataFrame,
    regression_strengths: Sequence[float] = STRENGTH_GRID,
    seed: int = 0,
) -> ItemStats:
    """Catalog statistics from ``interactions``; the item regression's strength is
    chosen among ``regression_strengths`` on a held-out split of them."""
    by_id = dataset.items.set_index("content_id").loc[space.items.keys]
    return build_item_stats(
        space,
        item_tokens=catalog_tokens(by_id.reset_index()),
        item_levels=by_id["level"].astype(float).tolist(),
        item_prerequisites=by_id["prerequisites"].tolist(),
        interactions=zip(interactions["user_id"], interactions["content_id"], strict=True),
        regression_strengths=regression_strengths,
        seed=seed,
    )


def learner_state(
    space: FeatureSpace,
    histories: Histories,
    declared: dict[str, tuple[float, tuple[str, ...]]],
    user_id: str,
) -> LearnerState:
    level, interests = declared.get(user_id, (math.nan, ()))
    return LearnerState.of(
        space, histories.get(user_id), histories.strengths.get(user_id, []), level, interests
    )


def declared_profiles(learners: pd.DataFrame) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Declared level (NaN if none) and interests per learner."""
    return {
        row.user_id: (float(row.level), tuple(row.interests))
        for row in learners.itertuples(index=False)
    }
