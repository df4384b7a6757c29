"""New catalog items reach learners before the next retraining, through reserved slots.

The recommender is the real one over the small trained bundle and its faiss index; the
new items come in the way ``PUT /admin/catalog`` adds them (item tower, index, catalog).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learnrec.data.dataset import Dataset, split_interactions
from learnrec.evaluation.exposure import SLOT_COUNTS, hold_out_items
from learnrec.schemas import ContentItem, Learner
from learnrec.serving.bundle_index import load_index
from learnrec.serving.exposure import make_room
from learnrec.serving.recommender import (
    HistoryItem,
    ModelBundle,
    Recommender,
    RecommendOptions,
)

TOPIC = "quantum-widgets"  # a topic no item of the sample catalog has


def recommender(quality_run: Path, slots: int) -> Recommender:
    bundle = quality_run / "bundle"
    return Recommender(ModelBundle(bundle), load_index(bundle), new_item_slots=slots)


def newcomer(level: int = 2, interests: tuple[str, ...] = (TOPIC,)) -> Learner:
    return Learner(user_id="newcomer", level=level, interests=list(interests))


def new_item(content_id: str, level: int = 2, **fields: object) -> ContentItem:
    return ContentItem.model_validate(
        {"content_id": content_id, "title": content_id.title(), "topics": [TOPIC], "level": level}
        | fields
    )


def ids(rec: Recommender, profile: Learner, options: RecommendOptions) -> list[str]:
    return [r.content_id for r in rec.recommend(None, [], profile, options).items]


def test_a_matching_new_item_takes_the_reserved_slot_with_its_reason(quality_run: Path) -> None:
    rec = recommender(quality_run, slots=1)
    # k 2: the model alone does not rank the new item this high for this learner.
    off = recommender(quality_run, slots=0)
    off.add_items([new_item("widgets-101")])
    assert "widgets-101" not in ids(off, newcomer(), RecommendOptions(k=2))
    before = rec.recommend(None, [], newcomer(), RecommendOptions(k=2)).items
    assert rec.add_items([new_item("widgets-101")]) == 1
    after = rec.recommend(None, [], newcomer(), RecommendOptions(k=2)).items
    assert [r.content_id for r in after] == [before[0].content_id, "widgets-101"]
    assert after[1].reason == f"New in {TOPIC}" and after[1].title == "Widgets-101"
    assert [r.rank for r in after] == [1, 2]
    # A slot is never most of a list: a list of one stays the model's pick.
    assert ids(rec, newcomer(), RecommendOptions(k=1)) == [before[0].content_id]
    # Where the model ranks it on its own, it keeps its place and says it is new.
    ranked = rec.recommend(None, [], newcomer(), RecommendOptions(k=10)).items
    assert [r.reason for r in ranked if r.content_id == "widgets-101"] == [f"New in {TOPIC}"]
    assert len(ranked) == 10


def test_new_items_outside_the_learners_level_or_topics_are_not_exposed(
    quality_run: Path,
) -> None:
    rec = recommender(quality_run, slots=1)
    baseline = ids(rec, newcomer(level=1), RecommendOptions(k=2))
    rec.add_items(
        [
            new_item("too-hard", level=5),
            new_item("elsewhere", level=1, topics=["underwater-basket-weaving"]),
        ]
    )
    assert ids(rec, newcomer(level=1), RecommendOptions(k=2)) == baseline
    # The same items do reach a learner whose level they fit.
    assert "too-hard" in ids(rec, newcomer(level=5), RecommendOptions(k=2))


def test_the_request_filters_apply_to_new_items(quality_run: Path) -> None:
    rec = recommender(quality_run, slots=1)
    rec.add_items([new_item("widgets-101")])
    for options in (
        RecommendOptions(k=2, exclude_ids=frozenset({"widgets-101"})),
        RecommendOptions(k=2, exclude_topics=frozenset({TOPIC})),
        RecommendOptions(k=2, levels=frozenset({1})),
    ):
        assert "widgets-101" not in ids(rec, newcomer(), options)
    consumed = [HistoryItem("widgets-101", 1.0)]
    result = rec.recommend(None, consumed, newcomer(), RecommendOptions(k=10))
    assert "widgets-101" not in [r.content_id for r in result.items]


def test_prerequisites_still_order_new_items(quality_run: Path, small_dataset: Dataset) -> None:
    rec = recommender(quality_run, slots=2)
    first = str(small_dataset.items["content_id"].iloc[0])
    rec.add_items([new_item("widgets-201", prerequisites=[first]), new_item("widgets-101")])
    items = rec.recommend(None, [], newcomer(), RecommendOptions(k=10)).items
    assert items[-1].content_id == "widgets-201"
    assert items[-1].reason == f"New in {TOPIC} (complete its prerequisites first)"
    assert "widgets-101" in [r.content_id for r in items[:-1]]


@pytest.mark.parametrize("slots", [0, 1])
def test_no_slot_is_taken_without_a_matching_new_item_or_with_zero_slots(
    quality_run: Path, slots: int
) -> None:
    off = recommender(quality_run, slots=0)
    expected = {2: off.recommend(None, [], newcomer(), RecommendOptions(k=2))}
    on = recommender(quality_run, slots=slots)
    if slots == 0:  # a matching new item exists, but exposure is off
        on.add_items([new_item("widgets-101")])
    else:  # exposure is on, but no new item shares the learner's topic
        on.add_items([new_item("elsewhere", topics=["underwater-basket-weaving"])])
    got = on.recommend(None, [], newcomer(), RecommendOptions(k=2))
    assert got.items == expected[2].items
    assert got.filled_from_popular == expected[2].filled_from_popular


def test_only_lower_ranked_picks_that_are_not_new_give_way() -> None:
    ranked = ["a", "new1", "b", "c"]
    assert make_room(ranked, {"new1"}.__contains__, 2, 4) == [0, 1]
    assert make_room(ranked, {"new1"}.__contains__, 1, 10) == [0, 1, 2, 3]
    assert make_room(["new1"], {"new1"}.__contains__, 1, 1) == [0]


def test_held_out_items_lose_their_training_interactions_only(small_dataset: Dataset) -> None:
    parts = split_interactions(small_dataset.interactions, "stratified", 0.25, 42)
    train, held = hold_out_items(parts.train, parts.test, 0.2, 42)
    test_items = set(parts.test["content_id"])
    assert held and set(held) <= test_items
    assert len(held) == round(0.2 * len(test_items))
    assert not set(train["content_id"]) & set(held)
    kept = parts.train[~parts.train["content_id"].isin(held)]
    assert len(train) == len(kept) < len(parts.train)
    assert hold_out_items(parts.train, parts.test, 0.2, 42)[1] == held  # seeded
    assert hold_out_items(parts.train, parts.test, 0.0, 42) == (parts.train, [])


def test_the_quality_benchmark_compares_slot_counts_through_serving(quality_run: Path) -> None:
    metrics = json.loads((quality_run / "metrics.json").read_text())
    comparison = metrics["new_item_slots"]
    rows = comparison["by_slots"]
    assert set(rows) == {str(s) for s in SLOT_COUNTS}
    assert comparison["users"] == metrics["n_users"]
    k = metrics["k"]
    # Without slots, new items reach learners only where the model ranks them itself.
    assert rows["0"]["new_items_shown"] <= rows["1"]["new_items_shown"]
    assert all(0.0 <= row[f"ndcg@{k}"] <= 1.0 for row in rows.values())
    report = (quality_run / "report.md").read_text()
    assert "New-item slots through the serving path" in report
