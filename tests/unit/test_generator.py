"""The sample generator: reproducible, valid, and with structure a recommender can learn."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from learnrec.data.dataset import interactions_from_events
from learnrec.data.generator import (
    DEFAULT_END,
    GeneratedData,
    click_probability,
    generate,
    read_sample,
    to_dataset,
    write_sample,
)
from learnrec.schemas import ContentItem, Event, EventType, Learner
from learnrec_dev.cli import main

SAMPLE_FILES = ("catalog.jsonl", "learners.jsonl", "events.jsonl", "truth.json")
DENSE = {"users": 200, "items": 80, "events": 3000, "seed": 7}
# The dense sample has ~50 events per active learner but only 20 items per topic, so
# heavy learners exhaust their topic (and the catalog) and the preference structure is
# washed out. Structural checks use a catalog large enough not to be exhausted.
SPARSE = {"users": 400, "items": 200, "events": 3000, "seed": 7}
PROGRESS_ORDER = [EventType.VIEW, EventType.START, EventType.PROGRESS, EventType.COMPLETE]


def _generate(sizes: dict[str, int]) -> GeneratedData:
    return generate(
        users=sizes["users"], items=sizes["items"], events=sizes["events"], seed=sizes["seed"]
    )


@pytest.fixture(scope="module")
def dense() -> GeneratedData:
    return _generate(DENSE)


@pytest.fixture(scope="module")
def sparse() -> GeneratedData:
    return _generate(SPARSE)


@pytest.fixture(scope="module")
def dense_dir(dense: GeneratedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dense")
    write_sample(dense, out)
    return out


def _truth(data: GeneratedData) -> dict[str, Any]:
    assert data.truth is not None
    return data.truth


def _main_topics(truth: dict[str, Any]) -> dict[str, str]:
    learners = truth["learners"]
    return {
        user: truth["topics"][int(np.argmax(interest))]
        for user, interest in zip(learners["user_id"], learners["interest"], strict=True)
    }


# --- determinism -------------------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(
    dense: GeneratedData, dense_dir: Path, tmp_path: Path
) -> None:
    write_sample(_generate(DENSE), tmp_path)
    for name in SAMPLE_FILES:
        assert (tmp_path / name).read_bytes() == (dense_dir / name).read_bytes(), name


def test_another_seed_gives_other_events(dense: GeneratedData) -> None:
    other = _generate(DENSE | {"seed": 8})
    assert other.events != dense.events
    assert [e.content_id for e in other.events] != [e.content_id for e in dense.events]


def test_write_sample_returns_the_paths(dense: GeneratedData, tmp_path: Path) -> None:
    paths = write_sample(dense, tmp_path / "new" / "folder")
    assert {p.name for p in paths.values()} == set(SAMPLE_FILES)
    assert all(p.is_file() for p in paths.values())


def test_cli_generate_writes_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sample"
    argv = ["data", "generate", "--users", "150", "--items", "60", "--events", "2000"]
    assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    for name in SAMPLE_FILES:
        assert (out / name).is_file(), name
    report = json.loads(capsys.readouterr().out)
    lines = (out / "events.jsonl").read_text().splitlines()
    assert report["events"] == len(lines)
    assert 0 < len(lines) <= 2000
    assert len((out / "catalog.jsonl").read_text().splitlines()) == 60
    assert len((out / "learners.jsonl").read_text().splitlines()) == 150


@pytest.mark.parametrize(
    "kwargs", [{"users": 0}, {"items": 1}, {"events": 0}], ids=["users", "items", "events"]
)
def test_generate_rejects_empty_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least"):
        _generate(DENSE | kwargs)


# --- structure ---------------------------------------------------------------------------


def test_every_written_row_validates(dense: GeneratedData, dense_dir: Path) -> None:
    events = [Event.model_validate_json(line) for line in (dense_dir / "events.jsonl").open()]
    assert events == dense.events
    items = [ContentItem.model_validate_json(line) for line in (dense_dir / "catalog.jsonl").open()]
    assert items == dense.items
    learners = [Learner.model_validate_json(line) for line in (dense_dir / "learners.jsonl").open()]
    assert learners == dense.learners
    # Timestamps are written as UTC with a Z suffix.
    for line in (dense_dir / "events.jsonl").open():
        assert json.loads(line)["ts"].endswith("Z")


def test_sizes_and_ids(dense: GeneratedData) -> None:
    assert len(dense.items) == DENSE["items"]
    assert len(dense.learners) == DENSE["users"]
    item_ids = {item.content_id for item in dense.items}
    user_ids = {learner.user_id for learner in dense.learners}
    assert len(item_ids) == DENSE["items"] and len(user_ids) == DENSE["users"]
    assert {e.content_id for e in dense.events} <= item_ids
    assert {e.user_id for e in dense.events} <= user_ids
    assert len({e.event_id for e in dense.events}) == len(dense.events)


def test_event_and_session_ids_are_not_built_from_the_user_id(dense: GeneratedData) -> None:
    """They are stored (hashed, but a producer's copy is not): they must not leak the learner."""
    for event in dense.events:
        assert event.event_id and event.session_id
        assert event.user_id not in event.event_id and event.user_id not in event.session_id
    sessions: dict[str, set[str]] = {}
    for event in dense.events:  # a session is one learner's
        sessions.setdefault(event.session_id or "", set()).add(event.user_id)
    assert all(len(users) == 1 for users in sessions.values())
    again = _generate(DENSE)
    assert [e.event_id for e in again.events] == [e.event_id for e in dense.events]


def test_events_are_sorted_and_not_after_the_end(dense: GeneratedData) -> None:
    stamps = [e.ts for e in dense.events]
    assert stamps == sorted(stamps)
    assert max(stamps) <= DEFAULT_END


def test_event_count_matches_the_request_when_the_catalog_is_large_enough(
    sparse: GeneratedData,
) -> None:
    assert len(sparse.events) == SPARSE["events"]


def test_fewer_events_only_when_learners_exhaust_the_catalog(dense: GeneratedData) -> None:
    # A learner stops once they have touched every item, so the log can fall short of
    # the request, but only through such learners.
    assert len(dense.events) <= DENSE["events"]
    if len(dense.events) < DENSE["events"]:
        touched: dict[str, set[str]] = defaultdict(set)
        for event in dense.events:
            touched[event.user_id].add(event.content_id)
        assert any(len(items) == DENSE["items"] for items in touched.values())


@pytest.mark.parametrize(("users", "events"), [(200, 10), (5, 50), (1, 1)])
def test_small_requests_are_met_exactly(users: int, events: int) -> None:
    data = generate(users=users, items=80, events=events, seed=1)
    assert len(data.events) == events


def test_progress_events_follow_the_funnel(dense: GeneratedData) -> None:
    sequences: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in dense.events:
        if event.event_type in PROGRESS_ORDER:
            sequences[(event.user_id, event.content_id)].append(event)
    assert any(len(seq) == 4 for seq in sequences.values())
    for key, seq in sequences.items():
        kinds = [e.event_type for e in seq]
        # Each learner-item pair has at most one of each step, in funnel order, from view.
        assert kinds == PROGRESS_ORDER[: len(kinds)], key
        for before, after in itertools.pairwise(seq):
            # Strictly later, except where the generator clamps the clock at its end.
            assert before.ts < after.ts or after.ts == DEFAULT_END, key


def test_every_other_event_follows_a_view(dense: GeneratedData) -> None:
    viewed: dict[tuple[str, str], Any] = {}
    for event in dense.events:
        key = (event.user_id, event.content_id)
        if event.event_type is EventType.VIEW:
            assert key not in viewed, "an item is picked once per learner"
            viewed[key] = event.ts
        else:
            assert key in viewed and viewed[key] <= event.ts, (key, event.event_type)


def test_event_values(dense: GeneratedData) -> None:
    for event in dense.events:
        if event.event_type is EventType.PROGRESS:
            assert event.value is not None and 0 < event.value < 1
        elif event.event_type is EventType.RATE:
            assert event.value in {1.0, 2.0, 3.0, 4.0, 5.0}
        elif event.event_type is EventType.COMPLETE:
            assert event.value == 1.0


def test_prerequisites_are_easier_items_of_the_same_topic(dense: GeneratedData) -> None:
    by_id = {item.content_id: item for item in dense.items}
    with_prereqs = [item for item in dense.items if item.prerequisites]
    assert with_prereqs
    for item in with_prereqs:
        for prereq_id in item.prerequisites:
            assert prereq_id in by_id, (item.content_id, prereq_id)
            prereq = by_id[prereq_id]
            assert prereq.topics[0] == item.topics[0], (item.content_id, prereq_id)
            assert prereq.level is not None and item.level is not None
            assert prereq.level < item.level, (item.content_id, prereq_id)


def test_item_popularity_is_long_tailed(sparse: GeneratedData) -> None:
    interactions = to_dataset(sparse).interactions
    ids = [item.content_id for item in sparse.items]
    counts = interactions.groupby("content_id").size().reindex(ids, fill_value=0)
    ranked = np.sort(counts.to_numpy())[::-1]
    total = ranked.sum()
    top_decile = ranked[: len(ranked) // 10].sum() / total
    bottom_half = ranked[len(ranked) // 2 :].sum() / total
    assert top_decile > 0.2  # twice a uniform catalog's share
    assert top_decile > 1.5 * bottom_half


def test_learners_concentrate_on_their_main_topic(sparse: GeneratedData) -> None:
    truth = _truth(sparse)
    main_topic = _main_topics(truth)
    topics_of = {item.content_id: item.topics for item in sparse.items}
    interactions = to_dataset(sparse).interactions
    sizes = interactions.groupby("user_id").size()
    active = interactions[interactions["user_id"].isin(sizes[sizes >= 5].index)]
    assert active["user_id"].nunique() >= 50
    on_topic = np.array(
        [
            main_topic[user] in topics_of[item]
            for user, item in zip(active["user_id"], active["content_id"], strict=True)
        ]
    )
    assert on_topic.mean() > 0.6
    # And it is not the catalog's make-up: a topic's share of items is far lower.
    shares = [np.mean([t in topics for topics in topics_of.values()]) for t in truth["topics"]]
    assert max(shares) < 0.4


def test_even_a_dense_sample_starts_on_the_main_topic(dense: GeneratedData) -> None:
    main_topic = _main_topics(_truth(dense))
    topics_of = {item.content_id: item.topics for item in dense.items}
    first_views: dict[str, list[str]] = defaultdict(list)
    for event in dense.events:
        if event.event_type is EventType.VIEW:
            first_views[event.user_id].append(event.content_id)
    hits = [
        main_topic[user] in topics_of[item]
        for user, items in first_views.items()
        if len(items) >= 5
        for item in items[:10]
    ]
    assert np.mean(hits) > 0.6


def test_truth_describes_the_catalog_and_learners(dense: GeneratedData) -> None:
    truth = _truth(dense)
    assert truth["items"]["content_id"] == [item.content_id for item in dense.items]
    assert truth["learners"]["user_id"] == [learner.user_id for learner in dense.learners]
    assert truth["items"]["level"] == [float(item.level or 0) for item in dense.items]
    for interest in truth["learners"]["interest"]:
        assert len(interest) == len(truth["topics"])
        assert sum(interest) == pytest.approx(1.0, abs=1e-4)
    for skill, initial in zip(
        truth["learners"]["skill"], truth["learners"]["initial_skill"], strict=True
    ):
        assert 1.0 <= initial <= skill <= 5.0


# --- the click model ---------------------------------------------------------------------


def test_click_probability_is_a_probability(dense: GeneratedData) -> None:
    truth = _truth(dense)
    ids = truth["items"]["content_id"]
    for user in truth["learners"]["user_id"][:20]:
        p = click_probability(truth, user, ids)
        assert p.shape == (len(ids),)
        assert np.all((p > 0) & (p < 1))


def test_click_probability_prefers_the_main_topic_at_the_learners_level(
    dense: GeneratedData,
) -> None:
    truth = _truth(dense)
    items, learners = truth["items"], truth["learners"]
    levels = np.asarray(items["level"])
    main_of_item = np.asarray(items["main_topic"])
    second_of_item = np.asarray(items["second_topic"])
    checked = 0
    for row, user in enumerate(learners["user_id"][:40]):
        main = int(np.argmax(learners["interest"][row]))
        skill = float(learners["skill"][row])
        gap = np.abs(levels - skill)
        mine = np.flatnonzero(main_of_item == main)
        others = np.flatnonzero((main_of_item != main) & (second_of_item != main))
        if len(mine) == 0 or len(others) == 0:
            continue
        near = int(mine[np.argmin(gap[mine])])
        far = int(others[np.argmax(gap[others])])
        if gap[far] < 2:
            continue
        ids = [items["content_id"][near], items["content_id"][far]]
        prereqs = [items["content_id"][p] for p in items["prerequisites"][near]]
        p_near, p_far = click_probability(truth, user, ids, completed=prereqs)
        assert p_near > p_far, user
        checked += 1
    assert checked >= 20


def test_click_probability_rewards_completed_prerequisites(dense: GeneratedData) -> None:
    truth = _truth(dense)
    items = truth["items"]
    row = next(i for i, p in enumerate(items["prerequisites"]) if p)
    target = items["content_id"][row]
    prereq = items["content_id"][items["prerequisites"][row][0]]
    user = truth["learners"]["user_id"][0]
    (without,) = click_probability(truth, user, [target])
    (with_done,) = click_probability(truth, user, [target], completed=[prereq])
    assert with_done > without


# --- reading a sample back ---------------------------------------------------------------


def test_read_sample_gives_the_dataset_with_its_truth(
    dense: GeneratedData, dense_dir: Path
) -> None:
    dataset = read_sample(dense_dir)
    assert dataset.name == "sample"
    assert dataset.truth == json.loads((dense_dir / "truth.json").read_text())
    assert dataset.truth == dense.truth
    assert set(dataset.items["content_id"]) == {item.content_id for item in dense.items}
    assert set(dataset.learners["user_id"]) == {learner.user_id for learner in dense.learners}

    rows = [json.loads(line) for line in (dense_dir / "events.jsonl").open()]
    events = pd.DataFrame(rows)
    # Whole-second stamps are written without a fraction, so the text is mixed ISO 8601.
    events["ts"] = pd.to_datetime(events["ts"], utc=True, format="ISO8601")
    expected = interactions_from_events(events)
    pd.testing.assert_frame_equal(
        dataset.interactions, expected, check_dtype=False, check_index_type=False
    )
    pd.testing.assert_frame_equal(dataset.interactions, to_dataset(dense).interactions)
    assert dataset.has_timestamps
    assert (dataset.interactions["weight"] > 0).all()


def test_read_sample_without_truth(dense_dir: Path, tmp_path: Path) -> None:
    for name in SAMPLE_FILES[:3]:
        (tmp_path / name).write_bytes((dense_dir / name).read_bytes())
    dataset = read_sample(tmp_path, name="no-truth")
    assert dataset.truth is None
    assert dataset.name == "no-truth"
    assert len(dataset.interactions) > 0


def test_to_dataset_without_events(dense: GeneratedData) -> None:
    dataset = to_dataset(GeneratedData(dense.items, dense.learners, [], dense.truth))
    assert dataset.interactions.empty


def test_recent_moves_a_sample_into_the_retention_keeping_its_order() -> None:
    from datetime import UTC, datetime, timedelta

    from learnrec.data.generator import recent

    data = generate(users=30, items=20, events=400, seed=1)
    end = datetime(2030, 1, 1, tzinfo=UTC)

    moved = recent(data, end, days=80)

    stamps = [e.ts for e in moved.events]
    assert max(stamps) == end and end - min(stamps) <= timedelta(days=80)
    assert stamps == sorted(stamps)  # the generator's log is in time order; it stays so
    assert [e.event_id for e in moved.events] == [e.event_id for e in data.events]
    assert data.events[0].ts < end - timedelta(days=80)  # it did need moving
