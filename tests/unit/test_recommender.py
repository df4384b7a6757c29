"""The recommendation path on a real bundle whose geometry is known (unit.tiny_bundle).

Each expectation follows from the bundle's design: a learner's topic decides which items
retrieval reaches first (the smaller an item's angle, the closer), the ranker keeps that
order, items whose prerequisites are not completed go last, and the catalog's titles
word the reasons. No TensorFlow, no database, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from learnrec.config import Settings
from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit
from learnrec.schemas import ContentItem, Learner
from learnrec.serving import exposure
from learnrec.serving.bundle_index import load_index
from learnrec.serving.context import load_recommender
from learnrec.serving.model_store import ActiveModel, LocalModelStore, promote
from learnrec.serving.recommender import (
    TOP_K_RETRIEVAL,
    Fallback,
    HistoryItem,
    ModelBundle,
    Recommender,
    RecommendOptions,
    RecommendResult,
)
from unit.tiny_bundle import ENGAGEMENT, write_bundle

PREREQUISITES_FIRST = " (complete its prerequisites first)"
PYTHON_FAN = Learner(user_id="zed", interests=["python"])
COMPLETED_INTRO = [HistoryItem("py-intro", 4.0)]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture(scope="module")
def popularity_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("tiny") / "bundle", ranker="log_popularity")


@pytest.fixture(scope="module")
def rankerless_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("tiny") / "bundle", ranker=None)


def make(directory: Path, slots: int = 1, top_k: int = TOP_K_RETRIEVAL) -> Recommender:
    """A recommender of its own per test: adding items changes its catalog and index."""
    return Recommender(ModelBundle(directory), load_index(directory), top_k, slots)


def picks(result: RecommendResult) -> list[tuple[str, str]]:
    assert [r.rank for r in result.items] == list(range(1, len(result.items) + 1))
    return [(r.content_id, r.reason) for r in result.items]


def ids(result: RecommendResult) -> list[str]:
    return [r.content_id for r in result.items]


class BrokenIndex:
    """An index whose every search fails, as an outage would."""

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        raise RuntimeError("connection refused")

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        raise RuntimeError("connection refused")

    def __len__(self) -> int:
        return 0


def test_serving_loads_the_bundle_from_the_model_store(bundle_dir: Path, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "models")
    store.publish(bundle_dir, "tiny-1")
    promote(store, "tiny-1")
    settings = Settings(top_k_retrieval=7, new_item_slots=2, vector_index="faiss")
    active = ActiveModel(store, lambda directory: load_recommender(directory, settings))
    recommender = active.get()
    assert active.error is None
    assert isinstance(recommender, Recommender)
    assert recommender.bundle is not None and recommender.index is not None
    assert recommender.bundle.version == "tiny-1"
    assert (recommender.top_k_retrieval, recommender.new_item_slots) == (7, 2)
    assert len(recommender.index) == 12
    assert recommender.bundle.ranker is not None
    result = recommender.recommend("ana", [], None, RecommendOptions(k=1))
    assert (ids(result), result.fallback, result.degraded) == (["py-intro"], None, [])


def test_a_learner_without_any_signal_is_served_from_the_towers(bundle_dir: Path) -> None:
    """Unknown id, no profile, no history: the user tower's bias alone picks the items."""
    result = make(bundle_dir).recommend("never-seen", [], None, RecommendOptions(k=5))
    assert (result.fallback, result.degraded, result.model_version) == (None, [], "tiny-1")
    assert picks(result) == [
        ("py-new", "New in python"),
        ("ux-new", "New in design"),
        ("ux-research", "Recommended for you in design"),
        ("ux-intro", "Recommended for you in design"),
        ("sql-intro", "Recommended for you in sql"),
    ]


def test_an_erased_learner_is_served_as_a_new_one(bundle_dir: Path) -> None:
    """``user_id`` None (erased since training) must not reach the learner's trained row."""
    rec = make(bundle_dir)
    options = RecommendOptions(k=6)
    known = rec.recommend("ana", [], None, options)
    erased = rec.recommend(None, [], None, options)
    stranger = rec.recommend("never-seen", [], None, options)
    assert "ana" in ENGAGEMENT
    assert ids(known)[:2] == ["py-intro", "py-new"]  # her python row leads
    assert picks(erased) == picks(stranger)
    assert [r.score for r in erased.items] == [r.score for r in stranger.items]
    assert ids(erased)[0] == "py-new"


def test_a_new_learner_with_a_declared_interest_gets_that_topic_first(bundle_dir: Path) -> None:
    result = make(bundle_dir).recommend("zed", [], PYTHON_FAN, RecommendOptions(k=4))
    assert picks(result) == [
        ("py-intro", "Matches your interest in python"),
        ("py-new", "New in python"),
        ("ux-new", "New in design"),
        ("ux-research", "Recommended for you in design"),
    ]


def test_completed_items_are_left_out_and_next_steps_come_first(bundle_dir: Path) -> None:
    """Completed (strength 4) unlocks the next step; viewed (1) does not."""
    history = [
        HistoryItem("py-intro", 4.0),
        HistoryItem("py-data", 4.0),
        HistoryItem("sql-intro", 1.0),
    ]
    result = make(bundle_dir).recommend("cy", history, None, RecommendOptions(k=20))
    assert picks(result) == [
        ("py-web", "Next step after Python basics"),
        ("py-adv", "Next step after Data with Python"),
        ("py-new", "New in python"),
        ("ux-new", "New in design"),
        ("ux-research", "Recommended for you in design"),
        ("ux-intro", "Learners who took SQL basics also took this"),
        ("sql-tuning", "Learners who took SQL basics also took this" + PREREQUISITES_FIRST),
        ("sql-joins", "Learners who took SQL basics also took this" + PREREQUISITES_FIRST),
        ("sql-new", "New in sql" + PREREQUISITES_FIRST),
    ]
    assert result.filled_from_popular == 0


def test_consumed_items_come_back_when_asked_for(bundle_dir: Path) -> None:
    history = [HistoryItem("py-intro", 4.0), HistoryItem("py-data", 4.0)]
    options = RecommendOptions(k=4, include_consumed=True, include_topics=frozenset({"python"}))
    result = make(bundle_dir, slots=0).recommend("cy", history, None, options)
    # Their trained row leans off the python axis: py-data is the nearest.
    assert picks(result) == [
        ("py-data", "Next step after Python basics"),
        ("py-intro", "Learners who took Data with Python also took this"),
        ("py-web", "Next step after Python basics"),
        ("py-adv", "Next step after Data with Python"),
    ]


def test_topic_filters_hold_and_nothing_outside_them_fills_the_list(bundle_dir: Path) -> None:
    options = RecommendOptions(k=5, include_topics=frozenset({"sql"}))
    history = [HistoryItem("sql-intro", 4.0)]
    result = make(bundle_dir).recommend("dee", history, None, options)
    assert picks(result) == [
        ("sql-joins", "Next step after SQL basics"),
        ("sql-new", "New in sql"),
        ("sql-tuning", "Learners who took SQL basics also took this" + PREREQUISITES_FIRST),
    ]
    assert (result.filled_from_popular, result.fallback) == (0, None)


def test_level_and_exclusion_filters_hold(bundle_dir: Path) -> None:
    rec = make(bundle_dir)
    beginner = rec.recommend("never-seen", [], None, RecommendOptions(k=5, levels=frozenset({1})))
    assert ids(beginner) == ["ux-intro", "sql-intro", "py-intro"]
    options = RecommendOptions(
        k=5,
        exclude_topics=frozenset({"python", "design"}),
        exclude_ids=frozenset({"sql-tuning"}),
    )
    assert picks(rec.recommend("never-seen", [], None, options)) == [
        ("sql-intro", "Recommended for you in sql"),
        ("sql-new", "New in sql" + PREREQUISITES_FIRST),
        ("sql-joins", "Recommended for you in sql" + PREREQUISITES_FIRST),
    ]


def test_popular_items_fill_the_list_when_retrieval_runs_short(bundle_dir: Path) -> None:
    rec = make(bundle_dir, slots=0, top_k=2)
    result = rec.recommend("zed", [], PYTHON_FAN, RecommendOptions(k=4))
    short = "Popular with learners (filters left fewer personalised picks)"
    assert picks(result) == [
        ("py-intro", "Matches your interest in python"),
        ("py-data", "Matches your interest in python" + PREREQUISITES_FIRST),
        ("sql-intro", short),
        ("sql-joins", short),
    ]
    assert [r.score for r in result.items[2:]] == [4.0, 2.0]  # learners who engaged
    assert (result.filled_from_popular, result.fallback) == (2, None)


def test_without_a_model_the_list_is_empty_and_says_why() -> None:
    result = Recommender(None, None).recommend("ana", [], None, RecommendOptions())
    assert (result.items, result.model_version) == ([], None)
    assert (result.fallback, result.degraded) == (Fallback.POPULARITY, ["no model is loaded"])


def test_an_index_outage_is_answered_by_an_exact_search_with_the_same_filters(
    bundle_dir: Path,
) -> None:
    options = RecommendOptions(k=3, exclude_topics=frozenset({"sql"}))
    healthy = Recommender(ModelBundle(bundle_dir), load_index(bundle_dir), TOP_K_RETRIEVAL, 0)
    outage = Recommender(ModelBundle(bundle_dir), BrokenIndex(), TOP_K_RETRIEVAL, 0)
    result = outage.recommend("ana", COMPLETED_INTRO, None, options)
    # Twelve items: the faiss graph finds the exact neighbours, so the lists are equal.
    assert picks(result) == picks(healthy.recommend("ana", COMPLETED_INTRO, None, options))
    assert len(result.items) == 3
    assert all(not r.content_id.startswith("sql") for r in result.items)
    assert "py-intro" not in ids(result)
    assert (result.fallback, result.degraded) == (Fallback.EXACT_RETRIEVAL, ["index failed"])
    assert result.model_version == "tiny-1"


def test_a_failing_user_tower_serves_popular_items(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(bundle_dir)
    assert rec.bundle is not None

    def broken(*args: object) -> np.ndarray:
        raise RuntimeError("onnxruntime: invalid input")

    monkeypatch.setattr(rec.bundle.towers, "user", broken)
    result = rec.recommend("ana", [], None, RecommendOptions(k=2))
    assert ids(result) == ["py-intro", "sql-intro"]
    assert result.degraded == ["user tower failed"]


def test_opted_out_learners_get_popular_items_without_their_history(bundle_dir: Path) -> None:
    options = RecommendOptions(k=3, levels=frozenset({2}))
    result = make(bundle_dir).non_personalised(COMPLETED_INTRO, options, "personalisation is off")
    assert picks(result) == [
        ("py-data", "Popular with learners"),
        ("sql-joins", "Popular with learners"),
        ("py-web", "Popular with learners"),
    ]
    assert result.degraded == ["personalisation is off"]


def test_a_bundle_without_a_ranker_serves_retrieval_order(rankerless_bundle_dir: Path) -> None:
    result = make(rankerless_bundle_dir).recommend("zed", [], PYTHON_FAN, RecommendOptions(k=2))
    # No ranking features, so no interest match: the reason falls back to the topic.
    assert picks(result) == [
        ("py-intro", "Recommended for you in python"),
        ("py-new", "New in python"),
    ]
    assert (result.fallback, result.degraded) == (
        Fallback.RETRIEVAL_ORDER,
        ["the model has no ranker"],
    )


def test_a_failing_ranker_falls_back_to_retrieval_order(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make(bundle_dir)
    assert rec.bundle is not None and rec.bundle.ranker is not None

    def broken(features: np.ndarray) -> np.ndarray:
        raise ValueError("rows, features")

    monkeypatch.setattr(rec.bundle.ranker, "score", broken)
    result = rec.recommend("zed", [], PYTHON_FAN, RecommendOptions(k=2))
    assert ids(result) == ["py-intro", "py-new"]
    assert (result.fallback, result.degraded) == (Fallback.RETRIEVAL_ORDER, ["ranker failed"])


def test_the_rankers_order_wins_over_retrievals(popularity_bundle_dir: Path) -> None:
    """A ranker that prefers popular items reorders the same candidates by popularity."""
    rec = make(popularity_bundle_dir, slots=0)
    result = rec.recommend("zed", [], PYTHON_FAN, RecommendOptions(k=4))
    assert ids(result) == ["py-intro", "sql-intro", "ux-intro", "ux-research"]


def test_similar_items_come_from_the_item_towers_space(bundle_dir: Path) -> None:
    rec = make(bundle_dir)
    result = rec.similar("py-intro", 3)
    assert result is not None and result.fallback is None
    assert picks(result) == [
        ("py-data", "Similar content to Python basics"),
        ("py-web", "Similar content to Python basics"),
        ("py-adv", "Similar content to Python basics"),
    ]
    assert [r.title for r in result.items] == [
        "Data with Python",
        "Web apps in Python",
        "Advanced Python",
    ]
    assert rec.similar("no-such-item", 3) is None
    assert Recommender(None, None).similar("py-intro", 3) is None


def test_similar_items_without_an_index_come_from_an_exact_search(bundle_dir: Path) -> None:
    result = Recommender(ModelBundle(bundle_dir), None).similar("py-intro", 3)
    healthy = make(bundle_dir).similar("py-intro", 3)
    assert result is not None and healthy is not None
    assert len(result.items) == 3 and picks(result) == picks(healthy)
    assert (result.fallback, result.degraded) == (Fallback.EXACT_RETRIEVAL, ["index failed"])


def test_similar_items_fall_back_to_co_engagement(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recommender(ModelBundle(bundle_dir), None)

    def no_vectors(bundle: ModelBundle) -> None:
        raise OSError("item vectors unreadable")

    monkeypatch.setattr(rec, "_exact_index", no_vectors)
    result = rec.similar("py-intro", 3)
    assert result is not None
    # Cosine over learner sets (shared learners / √(product of popularities)).
    assert picks(result) == [
        ("sql-intro", "Learners who took Python basics also took this"),
        ("py-data", "Learners who took Python basics also took this"),
        ("sql-joins", "Learners who took Python basics also took this"),
    ]
    np.testing.assert_allclose(
        [r.score for r in result.items], [4 / 24**0.5, 3 / 18**0.5, 2 / 12**0.5], rtol=1e-6
    )
    assert (result.fallback, result.degraded) == (Fallback.POPULARITY, ["index failed"])


def test_popular_lists_the_most_engaged_items(bundle_dir: Path) -> None:
    top = make(bundle_dir).popular(3)
    assert [(r.content_id, r.score, r.rank, r.reason) for r in top] == [
        ("py-intro", 6.0, 1, "Popular with learners"),
        ("sql-intro", 4.0, 2, "Popular with learners"),
        ("py-data", 3.0, 3, "Popular with learners"),
    ]
    assert Recommender(None, None).popular(3) == []


def test_an_added_item_is_recommendable_at_once_and_says_it_is_new(bundle_dir: Path) -> None:
    rec = make(bundle_dir)
    fresh = ContentItem(content_id="py-fresh", title="Python for kids", topics=["python"], level=1)
    assert rec.add_items([fresh]) == 1
    result = rec.recommend("zed", [], PYTHON_FAN, RecommendOptions(k=2))
    assert picks(result) == [
        ("py-fresh", "New in python"),
        ("py-intro", "Matches your interest in python"),
    ]
    assert result.items[0].title == "Python for kids"
    assert make(bundle_dir).add_items([]) == 0
    assert Recommender(None, None).add_items([fresh]) == 0


def test_a_new_item_takes_the_reserved_slot_from_the_lowest_pick(bundle_dir: Path) -> None:
    options = RecommendOptions(k=2)
    without = make(bundle_dir, slots=0).recommend("zed", COMPLETED_INTRO, None, options)
    assert picks(without) == [
        ("py-data", "Next step after Python basics"),
        ("py-web", "Next step after Python basics"),
    ]
    with_slot = make(bundle_dir, slots=1).recommend("zed", COMPLETED_INTRO, None, options)
    assert picks(with_slot) == [
        ("py-data", "Next step after Python basics"),
        ("py-new", "New in python"),
    ]


def test_new_items_get_at_most_half_the_list(bundle_dir: Path) -> None:
    """New items the model ranked itself count toward the share; the rest replace picks."""
    history = [HistoryItem("py-intro", 4.0), HistoryItem("sql-intro", 4.0)]

    def served(slots: int, k: int) -> list[tuple[str, str]]:
        return picks(
            make(bundle_dir, slots=slots).recommend("zed", history, None, RecommendOptions(k=k))
        )

    ranked = [
        ("py-web", "Next step after Python basics"),
        ("py-data", "Next step after Python basics"),
        ("sql-joins", "Next step after SQL basics"),
        ("sql-new", "Next step after SQL basics"),
    ]
    assert served(0, 4) == ranked
    assert served(1, 4) == [*ranked[:3], ("sql-new", "New in sql")]
    assert served(3, 4) == [*ranked[:2], ("sql-new", "New in sql"), ("py-new", "New in python")]
    assert served(3, 2) == [ranked[0], ("sql-new", "New in sql")]


def test_a_new_item_far_from_the_learners_level_gets_no_slot(bundle_dir: Path) -> None:
    expert = Learner(user_id="zed", level=4)  # py-new is level 2
    result = make(bundle_dir).recommend("zed", COMPLETED_INTRO, expert, RecommendOptions(k=2))
    assert ids(result) == ["py-data", "py-web"]


def test_a_new_item_outside_the_learners_topics_gets_no_slot(bundle_dir: Path) -> None:
    """Design has a new item too, but nothing ties this learner to design."""
    result = make(bundle_dir, top_k=2).recommend(
        "zed", COMPLETED_INTRO, None, RecommendOptions(k=2, include_topics=frozenset({"design"}))
    )
    assert picks(result) == [
        ("ux-new", "New in design"),
        ("ux-research", "Recommended for you in design"),
    ]


def test_a_new_pick_goes_before_items_whose_prerequisites_are_missing(bundle_dir: Path) -> None:
    rec = make(bundle_dir, top_k=3)
    options = RecommendOptions(k=3, include_topics=frozenset({"python"}))
    result = rec.recommend("zed", [], PYTHON_FAN, options)
    assert picks(result) == [
        ("py-intro", "Matches your interest in python"),
        ("py-new", "New in python"),
        ("py-data", "Matches your interest in python" + PREREQUISITES_FIRST),
    ]


def test_a_new_pick_with_missing_prerequisites_says_so_and_goes_last(bundle_dir: Path) -> None:
    sql_fan = Learner(user_id="zed", interests=["sql"])
    options = RecommendOptions(k=3, include_topics=frozenset({"sql"}))
    result = make(bundle_dir, top_k=2).recommend("zed", [], sql_fan, options)
    assert picks(result) == [
        ("sql-intro", "Matches your interest in sql"),
        ("sql-joins", "Matches your interest in sql" + PREREQUISITES_FIRST),
        ("sql-new", "New in sql" + PREREQUISITES_FIRST),
    ]


def test_a_failing_exposure_keeps_the_ranked_list(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> tuple[list[str], np.ndarray]:
        raise MemoryError("vectors")

    monkeypatch.setattr(exposure.NewItemPool, "candidates", broken)
    result = make(bundle_dir).recommend("zed", COMPLETED_INTRO, None, RecommendOptions(k=2))
    assert ids(result) == ["py-data", "py-web"]
    assert result.degraded == ["new-item exposure failed"]
