"""The in-memory dataset that importers produce and training and evaluation consume.

Every source (the sample generator, a generic interactions file, MOOCCube, events in S3)
is turned into the same three frames, so the models never know where data came from:

- ``interactions``: one row per (learner, item) pair the learner engaged with,
  columns ``user_id`` (str), ``content_id`` (str), ``weight`` (float, > 0: how strong
  the engagement was), ``ts`` (datetime64[ns, UTC]; NaT where the source has no time).
- ``items``: one row per catalog item, the fields of :class:`learnrec.schemas.ContentItem`
  (list-valued columns hold Python lists; ``level`` is float with NaN for unknown).
- ``learners``: one row per learner with a profile, the fields of
  :class:`learnrec.schemas.Learner`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from learnrec.schemas import EVENT_STRENGTH, ContentItem, EventType, Learner

INTERACTION_COLUMNS = ["user_id", "content_id", "weight", "ts"]
ITEM_COLUMNS = list(ContentItem.model_fields)
LEARNER_COLUMNS = list(Learner.model_fields)
_LIST_ITEM_COLUMNS = ("topics", "tags", "prerequisites")
_LIST_LEARNER_COLUMNS = ("interests", "goals")

SplitName = Literal["stratified", "temporal"]


@dataclass
class Dataset:
    """Interactions plus the catalog and learner profiles they refer to."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    learners: pd.DataFrame
    # Sample data only: the generator's hidden truth, used to simulate clicks.
    truth: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def has_timestamps(self) -> bool:
        return bool(self.interactions["ts"].notna().all()) and len(self.interactions) > 0


def empty_interactions() -> pd.DataFrame:
    return normalise_interactions(pd.DataFrame(columns=INTERACTION_COLUMNS))


def normalise_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce dtypes and collapse repeated (learner, item) pairs into one interaction.

    A learner who viewed, started and completed an item has one interaction with it,
    as strong as the strongest event and dated by the first one: the split and the
    metrics count items a learner came to, not clicks.
    """
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str),
            "content_id": frame["content_id"].astype(str),
            "weight": pd.to_numeric(frame.get("weight", 1.0), errors="raise").astype(float)
            if "weight" in frame
            else 1.0,
            "ts": _utc(frame["ts"]) if "ts" in frame else pd.NaT,
        }
    )
    out["ts"] = _utc(out["ts"])
    if out.empty:
        return out.reset_index(drop=True)
    grouped = out.groupby(["user_id", "content_id"], sort=False, as_index=False).agg(
        weight=("weight", "max"), ts=("ts", "min")
    )
    return grouped.sort_values(["user_id", "ts", "content_id"], kind="stable").reset_index(
        drop=True
    )


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC; text in any ISO 8601 form (with or without fractions)."""
    return pd.to_datetime(values, utc=True, format="ISO8601")


def interactions_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """Turn raw events (the fields of :class:`learnrec.schemas.Event`) into interactions.

    Impressions and dislikes are not positives; a dislike also cancels the pair, since
    a learner who rejected an item should not have it counted as a hit later.
    """
    if events.empty:
        return empty_interactions()
    strength = events["event_type"].map({t.value: s for t, s in EVENT_STRENGTH.items()})
    disliked = events.loc[
        events["event_type"] == EventType.DISLIKE.value, ["user_id", "content_id"]
    ]
    positives = events.assign(weight=strength)[strength > 0]
    if not disliked.empty:
        keys = pd.MultiIndex.from_frame(disliked)
        positives = positives[
            ~pd.MultiIndex.from_frame(positives[["user_id", "content_id"]]).isin(keys)
        ]
    return normalise_interactions(positives[["user_id", "content_id", "weight", "ts"]])


def items_frame(items: Iterable[ContentItem]) -> pd.DataFrame:
    rows = [item.model_dump(mode="json") for item in items]
    frame = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    return _normalise_items(frame)


def content_items(items: pd.DataFrame) -> list[ContentItem]:
    """The catalog frame back as validated items (NaN becomes "not given")."""
    out = []
    for row in items.to_dict(orient="records"):
        known = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        if "level" in known:
            known["level"] = int(known["level"])
        out.append(ContentItem.model_validate(known))
    return out


def learners_frame(learners: Iterable[Learner]) -> pd.DataFrame:
    rows = [learner.model_dump(mode="json") for learner in learners]
    frame = pd.DataFrame(rows, columns=LEARNER_COLUMNS)
    return _normalise_learners(frame)


def _normalise_profiles(
    frame: pd.DataFrame, columns: list[str], list_columns: tuple[str, ...], key: str
) -> pd.DataFrame:
    """Shared shape of the item and learner frames: every column, lists as lists."""
    frame = frame.copy()
    for column in columns:
        if column not in frame:
            frame[column] = None
    for column in list_columns:
        frame[column] = [
            list(v) if isinstance(v, list | tuple | np.ndarray) else [] for v in frame[column]
        ]
    frame[key] = frame[key].astype(str)
    frame["level"] = pd.to_numeric(frame["level"], errors="coerce").astype(float)
    return frame


def _normalise_items(frame: pd.DataFrame) -> pd.DataFrame:
    frame = _normalise_profiles(frame, ITEM_COLUMNS, _LIST_ITEM_COLUMNS, "content_id")
    frame["title"] = frame["title"].fillna("").astype(str)
    frame["duration_minutes"] = pd.to_numeric(frame["duration_minutes"], errors="coerce")
    frame["format"] = pd.Series(
        [v if isinstance(v, str) and v else None for v in frame["format"]],
        index=frame.index,
        dtype=object,
    )
    return frame[ITEM_COLUMNS].drop_duplicates("content_id", keep="last").reset_index(drop=True)


def _normalise_learners(frame: pd.DataFrame) -> pd.DataFrame:
    frame = _normalise_profiles(frame, LEARNER_COLUMNS, _LIST_LEARNER_COLUMNS, "user_id")
    return frame[LEARNER_COLUMNS].drop_duplicates("user_id", keep="last").reset_index(drop=True)


def bare_items(content_ids: Iterable[str]) -> pd.DataFrame:
    """A catalog that knows only ids: for sources with no item metadata."""
    return _normalise_items(pd.DataFrame({"content_id": sorted(set(content_ids))}))


def bare_learners(user_ids: Iterable[str]) -> pd.DataFrame:
    return _normalise_learners(pd.DataFrame({"user_id": sorted(set(user_ids))}))


def make_dataset(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    learners: pd.DataFrame | None = None,
    truth: dict[str, Any] | None = None,
) -> Dataset:
    """Build a dataset whose catalog and learners cover every interaction."""
    interactions = normalise_interactions(interactions)
    items = _normalise_items(items) if items is not None else bare_items([])
    missing_items = set(interactions["content_id"]) - set(items["content_id"])
    if missing_items:
        items = pd.concat([items, bare_items(missing_items)], ignore_index=True)
    learners = _normalise_learners(learners) if learners is not None else bare_learners([])
    missing_learners = set(interactions["user_id"]) - set(learners["user_id"])
    if missing_learners:
        learners = pd.concat([learners, bare_learners(missing_learners)], ignore_index=True)
    return Dataset(name, interactions, items, learners, truth)


@dataclass(frozen=True)
class Split:
    """Train and test interactions; every test learner also has training history."""

    train: pd.DataFrame
    test: pd.DataFrame


def _held_out_count(n: int, fraction: float) -> int:
    """How many of a learner's n interactions to hold out.

    A learner with a single interaction stays whole in training (nothing to learn from
    otherwise); everyone else keeps at least one training and one test item.
    """
    if n < 2:
        return 0
    return int(min(n - 1, max(1, round(fraction * n))))


def split_interactions(
    interactions: pd.DataFrame,
    method: SplitName = "stratified",
    test_fraction: float = 0.25,
    seed: int = 42,
) -> Split:
    """Split per learner: a random fraction (stratified) or the latest fraction (temporal)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    if method == "temporal" and interactions["ts"].isna().any():
        raise ValueError("temporal split needs a timestamp on every interaction")
    rng = np.random.default_rng(seed)
    frame = interactions.reset_index(drop=True)
    if method == "stratified":
        order = rng.permutation(len(frame))
        frame = frame.iloc[order]
        frame = frame.sort_values("user_id", kind="stable")
    elif method == "temporal":
        # Ties in time are broken at random so that same-second events don't leak order.
        frame = frame.assign(_tie=rng.random(len(frame)))
        frame = frame.sort_values(["user_id", "ts", "_tie"], kind="stable").drop(columns="_tie")
    else:
        raise ValueError(f"unknown split {method!r}: use stratified or temporal")
    position = frame.groupby("user_id", sort=False).cumcount().to_numpy()
    sizes = frame.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    held = np.array([_held_out_count(int(n), test_fraction) for n in sizes])
    is_test = position >= sizes - held
    return Split(
        train=frame[~is_test].reset_index(drop=True), test=frame[is_test].reset_index(drop=True)
    )


DATASET_FILES = {
    "interactions": "interactions.parquet",
    "items": "items.parquet",
    "learners": "learners.parquet",
}


def write_dataset(
    dataset: Dataset, directory: Path, interactions: pd.DataFrame | None = None
) -> None:
    """Write a dataset folder (Parquet): the format of the training jobs' data channels.

    ``interactions`` overrides the dataset's own, so one catalog can go out with the
    several interaction sets a pipeline cuts from it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    frames = {
        "interactions": dataset.interactions if interactions is None else interactions,
        "items": dataset.items,
        "learners": dataset.learners,
    }
    for key, frame in frames.items():
        frame.to_parquet(directory / DATASET_FILES[key], index=False)
    (directory / "dataset.json").write_text(json.dumps({"name": dataset.name}))


def read_dataset(directory: Path) -> Dataset:
    """Read a folder written by :func:`write_dataset`."""
    missing = [f for f in DATASET_FILES.values() if not (directory / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"{directory} is not a dataset folder: missing {', '.join(missing)}"
        )
    meta_path = directory / "dataset.json"
    name = json.loads(meta_path.read_text())["name"] if meta_path.exists() else directory.name
    frames = {key: pd.read_parquet(directory / f) for key, f in DATASET_FILES.items()}
    return make_dataset(name, frames["interactions"], frames["items"], frames["learners"])
