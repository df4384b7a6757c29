"""The dataset frames: normalising, events to interactions, splits, Parquet folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrec.data.dataset import (
    DATASET_FILES,
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    LEARNER_COLUMNS,
    Split,
    empty_interactions,
    interactions_from_events,
    items_frame,
    learners_frame,
    make_dataset,
    normalise_interactions,
    read_dataset,
    split_interactions,
    write_dataset,
)
from learnrec.schemas import ContentFormat, ContentItem, Learner

T0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _ts(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["content_id"], strict=True))


def _interactions(sizes: list[int], seed: int = 0) -> pd.DataFrame:
    """Learner i has sizes[i] distinct items with distinct, shuffled timestamps."""
    rng = np.random.default_rng(seed)
    rows = []
    for u, n in enumerate(sizes):
        hours = rng.permutation(n * 10)[:n]
        for k in range(n):
            rows.append((f"u{u:03d}", f"c{k:03d}", float(k % 3 + 1), _ts(float(hours[k]))))
    return normalise_interactions(pd.DataFrame(rows, columns=INTERACTION_COLUMNS))


def _expected_held_out(n: int, fraction: float) -> int:
    return 0 if n < 2 else min(n - 1, max(1, round(fraction * n)))


# --- normalise_interactions --------------------------------------------------------------


def test_normalise_collapses_duplicates_to_max_weight_and_first_ts() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u1"],
            "content_id": ["a", "a", "a", "a", "b"],
            "weight": [1.0, 4.0, 2.0, 1.5, 1.0],
            "ts": [_ts(5), _ts(9), _ts(2), _ts(1), _ts(3)],
        }
    )
    out = normalise_interactions(frame)
    assert list(out.columns) == INTERACTION_COLUMNS
    assert len(out) == 3
    rows = {(r.user_id, r.content_id): (r.weight, r.ts) for r in out.itertuples()}
    assert rows[("u1", "a")] == (4.0, _ts(2))
    assert rows[("u1", "b")] == (1.0, _ts(3))
    assert rows[("u2", "a")] == (1.5, _ts(1))
    # Sorted by learner, then time.
    assert list(zip(out["user_id"], out["content_id"], strict=True)) == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
    ]


def test_normalise_coerces_types_and_fills_defaults() -> None:
    out = normalise_interactions(pd.DataFrame({"user_id": [1, 2], "content_id": [10, 10]}))
    assert list(out["user_id"]) == ["1", "2"]
    assert list(out["content_id"]) == ["10", "10"]
    assert list(out["weight"]) == [1.0, 1.0]
    assert out["ts"].isna().all()
    assert str(out["ts"].dt.tz) == "UTC"


def test_normalise_converts_timestamps_to_utc() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u"],
            "content_id": ["a"],
            "weight": ["2"],
            "ts": ["2026-01-01T02:00:00+02:00"],
        }
    )
    out = normalise_interactions(frame)
    assert out["ts"].iloc[0] == T0
    assert str(out["ts"].dt.tz) == "UTC"
    assert out["weight"].iloc[0] == 2.0


def test_empty_interactions_have_the_standard_columns() -> None:
    out = empty_interactions()
    assert out.empty
    assert list(out.columns) == INTERACTION_COLUMNS


# --- interactions_from_events ------------------------------------------------------------


def _events(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(u, c, kind, _ts(h)) for u, c, kind, h in rows],
        columns=["user_id", "content_id", "event_type", "ts"],
    )


def test_events_become_interactions_with_the_strongest_weight() -> None:
    events = _events(
        [
            ("u1", "a", "view", 1),
            ("u1", "a", "start", 2),
            ("u1", "a", "complete", 3),
            ("u1", "b", "click", 4),
        ]
    )
    out = interactions_from_events(events)
    rows = {(r.user_id, r.content_id): (r.weight, r.ts) for r in out.itertuples()}
    assert rows == {("u1", "a"): (4.0, _ts(1)), ("u1", "b"): (1.0, _ts(4))}


def test_impressions_are_dropped() -> None:
    events = _events(
        [("u1", "a", "impression", 1), ("u1", "b", "impression", 2), ("u1", "b", "view", 3)]
    )
    out = interactions_from_events(events)
    assert _pairs(out) == {("u1", "b")}
    # The impression neither dates nor weighs the interaction.
    assert out["ts"].iloc[0] == _ts(3)
    assert out["weight"].iloc[0] == 1.0


def test_a_dislike_cancels_only_its_own_pair() -> None:
    events = _events(
        [
            ("u1", "a", "view", 1),
            ("u1", "a", "complete", 2),
            ("u1", "a", "dislike", 3),
            ("u1", "b", "view", 4),
            ("u2", "a", "view", 5),
            ("u2", "c", "dislike", 6),
        ]
    )
    assert _pairs(interactions_from_events(events)) == {("u1", "b"), ("u2", "a")}


def test_events_with_iso_text_timestamps_of_mixed_precision() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "content_id": ["a", "b"],
            "event_type": ["view", "view"],
            "ts": ["2026-01-01T00:00:00.250000Z", "2026-01-01T01:00:00Z"],
        }
    )
    out = interactions_from_events(events)
    assert list(out["ts"]) == [T0 + pd.Timedelta(milliseconds=250), _ts(1)]


def test_no_events_give_no_interactions() -> None:
    out = interactions_from_events(_events([]))
    assert out.empty
    assert list(out.columns) == INTERACTION_COLUMNS


# --- split_interactions ------------------------------------------------------------------

SIZES = [1, 1, 2, 3, 4, 5, 7, 8, 10, 13, 20, 2, 1, 6, 9] * 4


def _check_split(interactions: pd.DataFrame, split: Split, fraction: float) -> None:
    train, test = _pairs(split.train), _pairs(split.test)
    assert train | test == _pairs(interactions)
    assert not train & test
    assert len(split.train) + len(split.test) == len(interactions)
    sizes = interactions.groupby("user_id").size()
    held = split.test.groupby("user_id").size()
    kept = split.train.groupby("user_id").size()
    for user, n in sizes.items():
        assert held.get(user, 0) == _expected_held_out(int(n), fraction), (user, n)
        assert kept.get(user, 0) >= 1, user
    assert set(split.test["user_id"]) <= set(split.train["user_id"])


@pytest.mark.parametrize("method", ["stratified", "temporal"])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_split_invariants(method: str, fraction: float) -> None:
    interactions = _interactions(SIZES)
    split = split_interactions(interactions, method, fraction, seed=3)  # type: ignore[arg-type]
    _check_split(interactions, split, fraction)
    assert list(split.train.columns) == list(interactions.columns)
    assert list(split.test.columns) == list(interactions.columns)


def test_single_interaction_learners_stay_in_train() -> None:
    interactions = _interactions([1, 1, 1, 5])
    split = split_interactions(interactions, "stratified", 0.5, seed=1)
    assert {"u000", "u001", "u002"} <= set(split.train["user_id"])
    assert set(split.test["user_id"]) == {"u003"}


def test_stratified_split_is_deterministic_for_a_seed() -> None:
    interactions = _interactions(SIZES)
    first = split_interactions(interactions, "stratified", 0.25, seed=11)
    second = split_interactions(interactions, "stratified", 0.25, seed=11)
    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.test, second.test)


def test_stratified_split_differs_for_another_seed() -> None:
    interactions = _interactions(SIZES)
    first = split_interactions(interactions, "stratified", 0.25, seed=11)
    other = split_interactions(interactions, "stratified", 0.25, seed=12)
    assert _pairs(first.test) != _pairs(other.test)
    assert len(first.test) == len(other.test)


def test_stratified_split_is_not_the_latest_items() -> None:
    # A random hold-out: over many learners it must not coincide with the temporal one.
    interactions = _interactions(SIZES)
    stratified = split_interactions(interactions, "stratified", 0.25, seed=5)
    temporal = split_interactions(interactions, "temporal", 0.25, seed=5)
    assert _pairs(stratified.test) != _pairs(temporal.test)


def test_temporal_split_holds_out_each_learners_latest_items() -> None:
    interactions = _interactions(SIZES)
    split = split_interactions(interactions, "temporal", 0.3, seed=0)
    for user, test in split.test.groupby("user_id"):
        train = split.train[split.train["user_id"] == user]
        assert test["ts"].min() > train["ts"].max(), user
        everything = interactions[interactions["user_id"] == user]
        latest = everything.nlargest(len(test), "ts")
        assert set(test["content_id"]) == set(latest["content_id"])


def test_temporal_split_is_deterministic_for_a_seed() -> None:
    # Same-time interactions are ordered at random, so ties must follow the seed.
    interactions = _interactions(SIZES).assign(ts=T0)
    first = split_interactions(interactions, "temporal", 0.25, seed=4)
    second = split_interactions(interactions, "temporal", 0.25, seed=4)
    pd.testing.assert_frame_equal(first.test, second.test)
    _check_split(interactions, first, 0.25)


def test_temporal_split_needs_timestamps() -> None:
    interactions = _interactions([3, 4])
    interactions.loc[2, "ts"] = pd.NaT
    with pytest.raises(ValueError, match="timestamp"):
        split_interactions(interactions, "temporal")
    # The stratified split does not care.
    split_interactions(interactions, "stratified")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_invalid_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_interactions(_interactions([3, 4]), "stratified", fraction)


def test_split_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        split_interactions(_interactions([3, 4]), "random")  # type: ignore[arg-type]


# --- Parquet folders ---------------------------------------------------------------------

ITEMS = [
    ContentItem(
        content_id="a",
        title="A",
        topics=["python", "data"],
        tags=["t1"],
        level=2,
        format="video",  # type: ignore[arg-type]
        duration_minutes=12.5,
        prerequisites=["b"],
    ),
    ContentItem(content_id="b", topics=["python"], level=1),
    ContentItem(content_id="c"),
]
LEARNERS = [
    Learner(user_id="u1", level=3, interests=["python", "data"], goals=["upskill"]),
    Learner(user_id="u2"),
]


def _dataset_interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3"],
            "content_id": ["a", "b", "a", "z"],
            "weight": [1.0, 4.0, 2.0, 1.0],
            "ts": [_ts(1), _ts(2), _ts(3), _ts(4)],
        }
    )


def test_dataset_round_trips_through_a_folder(tmp_path: Path) -> None:
    dataset = make_dataset(
        "demo", _dataset_interactions(), items_frame(ITEMS), learners_frame(LEARNERS)
    )
    write_dataset(dataset, tmp_path / "ds")
    assert {p.name for p in (tmp_path / "ds").iterdir()} == {
        *DATASET_FILES.values(),
        "dataset.json",
    }

    back = read_dataset(tmp_path / "ds")
    assert back.name == "demo"
    pd.testing.assert_frame_equal(back.interactions, dataset.interactions)
    # A missing format comes back as NaN or None (see test_missing_format_is_none).
    pd.testing.assert_frame_equal(
        back.items.drop(columns="format"), dataset.items.drop(columns="format")
    )
    assert list(back.items["format"].isna()) == list(dataset.items["format"].isna())
    pd.testing.assert_frame_equal(back.learners, dataset.learners)

    assert str(back.interactions["ts"].dt.tz) == "UTC"
    assert back.interactions["ts"].iloc[0] == _ts(1)
    items = back.items.set_index("content_id")
    assert items.loc["a", "topics"] == ["python", "data"]
    assert isinstance(items.loc["a", "topics"], list)
    assert items.loc["a", "prerequisites"] == ["b"]
    assert items.loc["a", "tags"] == ["t1"]
    assert items.loc["a", "format"] == "video"
    assert items.loc["c", "topics"] == []
    assert np.isnan(items.loc["c", "level"])
    learners = back.learners.set_index("user_id")
    assert learners.loc["u1", "interests"] == ["python", "data"]
    assert learners.loc["u1", "goals"] == ["upskill"]
    assert learners.loc["u2", "interests"] == []


def test_write_dataset_can_override_the_interactions(tmp_path: Path) -> None:
    dataset = make_dataset("demo", _dataset_interactions(), items_frame(ITEMS))
    subset = dataset.interactions.iloc[:2].reset_index(drop=True)
    write_dataset(dataset, tmp_path, interactions=subset)
    back = read_dataset(tmp_path)
    pd.testing.assert_frame_equal(back.interactions, subset)
    assert set(back.items["content_id"]) == set(dataset.items["content_id"])


def test_read_dataset_without_meta_is_named_after_the_folder(tmp_path: Path) -> None:
    dataset = make_dataset("demo", _dataset_interactions())
    write_dataset(dataset, tmp_path / "folder-name")
    (tmp_path / "folder-name" / "dataset.json").unlink()
    assert read_dataset(tmp_path / "folder-name").name == "folder-name"


def test_read_dataset_on_an_empty_folder_names_the_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        read_dataset(tmp_path)
    for name in DATASET_FILES.values():
        assert name in str(info.value)


def test_read_dataset_names_only_the_missing_file(tmp_path: Path) -> None:
    write_dataset(make_dataset("demo", _dataset_interactions()), tmp_path)
    (tmp_path / DATASET_FILES["learners"]).unlink()
    with pytest.raises(FileNotFoundError, match=DATASET_FILES["learners"]) as info:
        read_dataset(tmp_path)
    assert DATASET_FILES["items"] not in str(info.value)


def test_missing_format_stays_missing_through_a_folder(tmp_path: Path) -> None:
    dataset = make_dataset("demo", _dataset_interactions(), items_frame(ITEMS))
    write_dataset(dataset, tmp_path)
    formats = read_dataset(tmp_path).items.set_index("content_id")["format"]
    assert formats["a"] == "video"
    assert pd.isna(formats["b"]) and pd.isna(formats["c"])


def test_missing_format_is_none() -> None:
    frame = items_frame(ITEMS)
    assert frame.set_index("content_id")["format"]["b"] is None


# --- make_dataset ------------------------------------------------------------------------


def test_make_dataset_adds_bare_rows_for_unknown_ids() -> None:
    dataset = make_dataset(
        "demo", _dataset_interactions(), items_frame(ITEMS), learners_frame(LEARNERS)
    )
    assert list(dataset.items.columns) == ITEM_COLUMNS
    assert list(dataset.learners.columns) == LEARNER_COLUMNS
    assert set(dataset.items["content_id"]) == {"a", "b", "c", "z"}
    assert set(dataset.learners["user_id"]) == {"u1", "u2", "u3"}
    bare_item = dataset.items.set_index("content_id").loc["z"]
    assert bare_item["topics"] == [] and bare_item["title"] == "" and np.isnan(bare_item["level"])
    bare_learner = dataset.learners.set_index("user_id").loc["u3"]
    assert bare_learner["interests"] == [] and np.isnan(bare_learner["level"])
    # Known rows keep their metadata.
    assert dataset.items.set_index("content_id").loc["a", "topics"] == ["python", "data"]


def test_make_dataset_without_catalog_builds_one_from_the_interactions() -> None:
    dataset = make_dataset("demo", _dataset_interactions())
    assert sorted(dataset.items["content_id"]) == ["a", "b", "z"]
    assert sorted(dataset.learners["user_id"]) == ["u1", "u2", "u3"]
    assert dataset.has_timestamps
    assert dataset.items["content_id"].is_unique


def test_make_dataset_normalises_the_interactions() -> None:
    raw = pd.concat([_dataset_interactions(), _dataset_interactions()], ignore_index=True)
    dataset = make_dataset("demo", raw)
    assert len(dataset.interactions) == 4
    without_ts = make_dataset("demo", raw.drop(columns="ts"))
    assert not without_ts.has_timestamps


def test_content_items_inverts_items_frame() -> None:
    from learnrec.data.dataset import content_items

    items = [
        ContentItem(
            content_id="a",
            title="A",
            topics=["x"],
            level=2,
            format=ContentFormat.VIDEO,
            duration_minutes=12.5,
            prerequisites=["b"],
            tags=["t"],
        ),
        ContentItem(content_id="b"),
    ]
    assert content_items(items_frame(items)) == items
