"""FaissIndex against brute force: recall, every filter, upsert, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from learnrec.retrieval.faiss_index import FaissIndex
from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit, VectorIndex

DIM = 32
N = 5000
TOPICS = [f"topic-{i}" for i in range(20)]
_faiss: Any = faiss  # its bundled stubs lack SearchParametersHNSW and the 1-arg bitmap form


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return np.asarray(rows / np.linalg.norm(rows, axis=-1, keepdims=True), dtype=np.float32)


def _make_items(n: int = N, dim: int = DIM, seed: int = 7) -> list[IndexedItem]:
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.normal(size=(n, dim)))
    topic_a = rng.integers(0, len(TOPICS), n)
    topic_b = rng.integers(0, len(TOPICS), n)
    levels = rng.integers(1, 4, n)
    return [
        IndexedItem(
            content_id=f"c{i}",
            vector=vectors[i],
            topics=(TOPICS[topic_a[i]], TOPICS[topic_b[i]]),
            # every 10th item has no level: it must only pass filters without levels
            level=None if i % 10 == 0 else int(levels[i]),
        )
        for i in range(n)
    ]


def _passes(item: IndexedItem, f: ItemFilter) -> bool:
    """ItemFilter semantics, spelled out item by item (the reference the index must match)."""
    if item.content_id in f.exclude_ids:
        return False
    if f.include_topics and not f.include_topics.intersection(item.topics):
        return False
    if f.exclude_topics.intersection(item.topics):
        return False
    return not f.levels or item.level in f.levels


# id(list) -> (the list, kept alive so its id is not reused; its unit vectors)
_MATRICES: dict[int, tuple[list[IndexedItem], np.ndarray]] = {}


def _brute_force(
    items: list[IndexedItem], query: np.ndarray, k: int, f: ItemFilter | None = None
) -> list[str]:
    """Exact top-k by inner product over the items passing ``f`` (the reference answer)."""
    cached = _MATRICES.get(id(items))
    if cached is None or cached[0] is not items or len(cached[1]) != len(items):
        cached = _MATRICES[id(items)] = (items, _unit(np.stack([it.vector for it in items])))
    matrix = cached[1]
    scores = matrix @ _unit(query)
    if f is not None:
        scores[~np.array([_passes(item, f) for item in items])] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [items[i].content_id for i in order if np.isfinite(scores[i])]


@pytest.fixture(scope="module")
def items() -> list[IndexedItem]:
    return _make_items()


@pytest.fixture(scope="module")
def hnsw_index(items: list[IndexedItem]) -> FaissIndex:
    # exact thresholds off: every search below walks the graph unless a test says otherwise
    return FaissIndex.build(items, exact_threshold=0, exact_k_factor=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return _unit(np.random.default_rng(99).normal(size=(50, DIM)))


def _ids(hits: list[SearchHit]) -> list[str]:
    return [hit.content_id for hit in hits]


def test_satisfies_the_protocol(hnsw_index: FaissIndex) -> None:
    index: VectorIndex = hnsw_index
    assert len(index) == N


def test_hnsw_recall_at_10_against_brute_force(
    hnsw_index: FaissIndex, items: list[IndexedItem], queries: np.ndarray
) -> None:
    recalls = []
    for query in queries:
        found = _ids(hnsw_index.search(query, 10))
        truth = _brute_force(items, query, 10)
        recalls.append(len(set(found) & set(truth)) / 10)
    assert np.mean(recalls) >= 0.95


def test_scores_are_raw_inner_products_best_first(
    hnsw_index: FaissIndex, items: list[IndexedItem], queries: np.ndarray
) -> None:
    by_id = {item.content_id: item for item in items}
    query = queries[0] * 3.0  # the query is normalised too: scores stay cosines
    hits = hnsw_index.search(query, 20)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        expected = float(_unit(by_id[hit.content_id].vector) @ _unit(queries[0]))
        assert hit.score == pytest.approx(expected, abs=1e-5)


FILTERS = {
    "include_topics": ItemFilter(include_topics=frozenset(TOPICS[:6])),
    "exclude_topics": ItemFilter(exclude_topics=frozenset(TOPICS[:4])),
    "levels": ItemFilter(levels=frozenset({1, 3})),
    "exclude_ids": ItemFilter(exclude_ids=frozenset(f"c{i}" for i in range(0, N, 3))),
    "combined": ItemFilter(
        include_topics=frozenset(TOPICS[:10]),
        exclude_topics=frozenset(TOPICS[10:12]),
        levels=frozenset({2}),
        exclude_ids=frozenset(f"c{i}" for i in range(0, N, 7)),
    ),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_is_respected_on_the_graph_path(
    name: str, hnsw_index: FaissIndex, items: list[IndexedItem], queries: np.ndarray
) -> None:
    f = FILTERS[name]
    by_id = {item.content_id: item for item in items}
    recalls = []
    for query in queries[:20]:
        hits = hnsw_index.search(query, 10, f)
        assert len(hits) == 10
        assert all(_passes(by_id[hit.content_id], f) for hit in hits)
        truth = _brute_force(items, query, 10, f)
        recalls.append(len(set(_ids(hits)) & set(truth)) / 10)
    assert np.mean(recalls) >= 0.9


def test_items_without_level_pass_only_when_levels_is_empty(
    hnsw_index: FaissIndex, items: list[IndexedItem], queries: np.ndarray
) -> None:
    by_id = {item.content_id: item for item in items}
    with_levels = hnsw_index.search(queries[1], 200, ItemFilter(levels=frozenset({1, 2, 3})))
    assert all(by_id[hit.content_id].level is not None for hit in with_levels)
    unfiltered = hnsw_index.search(queries[1], 200)
    assert any(by_id[hit.content_id].level is None for hit in unfiltered)


def test_selective_filter_runs_exact_search(
    hnsw_index: FaissIndex,
    items: list[IndexedItem],
    queries: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = hnsw_index
    monkeypatch.setattr(index, "exact_threshold", 1000)  # the defaults: max(k * 50, 1000)
    monkeypatch.setattr(index, "exact_k_factor", 50)
    f = ItemFilter(include_topics=frozenset({TOPICS[0]}), levels=frozenset({2}))
    allowed = sum(_passes(item, f) for item in items)
    assert 0 < allowed <= 1000

    def no_graph(*args: object, **kwargs: object) -> list[SearchHit]:
        raise AssertionError("the graph must not be walked for a selective filter")

    monkeypatch.setattr(index, "_hnsw", no_graph)
    for query in queries[:10]:
        # exact: identical to brute force, order included
        assert _ids(index.search(query, 15, f)) == _brute_force(items, query, 15, f)


def test_short_filtered_graph_walk_is_filled_by_exact_search() -> None:
    """Allowed items sit in a far cluster the greedy walk towards the query never reaches."""
    rng = np.random.default_rng(3)
    dim, n_near, n_far, k = 16, 3000, 200, 20
    pole = np.zeros(dim, dtype=np.float32)
    pole[0] = 1.0
    near = _unit(pole + 0.3 * rng.normal(size=(n_near, dim)))
    far = _unit(-pole + 0.3 * rng.normal(size=(n_far, dim)))
    items = [IndexedItem(f"n{i}", v, topics=("near",)) for i, v in enumerate(near)]
    items += [IndexedItem(f"f{i}", v, topics=("far",)) for i, v in enumerate(far)]
    index = FaissIndex.build(
        items, m=8, ef_search=k, exact_threshold=0, exact_k_factor=0, max_filtered_ef=10_000
    )
    f = ItemFilter(include_topics=frozenset({"far"}))
    query = pole

    # Precondition: the same filtered graph search, straight through faiss, runs short.
    mask = np.array([item.topics == ("far",) for item in items])
    params = _faiss.SearchParametersHNSW()
    params.efSearch = max(k, int(np.ceil(k * len(items) / n_far)))
    selector = _faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
    params.sel = selector
    _, labels = index._index.search(query[None, :], k, params=params)
    assert (labels[0] >= 0).sum() < k

    hits = index.search(query, k, f)
    assert _ids(hits) == _brute_force(items, query, k, f)


def test_k_larger_than_the_allowed_set_returns_all_allowed(
    hnsw_index: FaissIndex, items: list[IndexedItem], queries: np.ndarray
) -> None:
    f = ItemFilter(include_topics=frozenset({TOPICS[5]}), levels=frozenset({1}))
    allowed = {item.content_id for item in items if _passes(item, f)}
    hits = hnsw_index.search(queries[2], len(allowed) + 50, f)
    assert set(_ids(hits)) == allowed
    assert len(hits) == len(allowed)


def test_nothing_allowed_unknown_topics_and_empty_index(
    hnsw_index: FaissIndex, queries: np.ndarray
) -> None:
    assert hnsw_index.search(queries[0], 5, ItemFilter(include_topics=frozenset({"nope"}))) == []
    empty = FaissIndex(DIM)
    assert len(empty) == 0
    assert empty.search(queries[0], 5) == []
    assert FaissIndex.build([], dim=DIM).search(queries[0], 5) == []


def test_invalid_arguments(hnsw_index: FaissIndex, queries: np.ndarray) -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        hnsw_index.search(queries[0], 0)
    with pytest.raises(ValueError, match="k must be positive"):
        FaissIndex(DIM).search(queries[0], -1)
    with pytest.raises(ValueError, match="dimension"):
        hnsw_index.search(np.ones(DIM + 1, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="zero"):
        hnsw_index.search(np.zeros(DIM, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="dim"):
        FaissIndex.build([])


def test_upsert_replaces_ids_and_adds_new_ones(
    items: list[IndexedItem], queries: np.ndarray
) -> None:
    index = FaissIndex.build(items[:2000], exact_threshold=0, exact_k_factor=0)
    query = queries[3]
    old_best = index.search(query, 1)[0].content_id
    # Move the best item far away, and add a new item right on the query.
    opposite = IndexedItem(old_best, -query, topics=("moved",), level=9)
    newcomer = IndexedItem("new-1", query + 0.01, topics=("fresh",), level=1)
    index.upsert([opposite, newcomer])
    assert len(index) == 2001
    assert index.n_deleted == 1

    hits = index.search(query, 50)
    assert hits[0].content_id == "new-1"
    assert hits[0].score == pytest.approx(1.0, abs=1e-2)
    assert old_best not in _ids(hits)  # its old vector is gone from every search
    # the new vector of the replaced id is found, with its new metadata
    worst = index.search(-query, 1, ItemFilter(levels=frozenset({9})))
    assert [(h.content_id, round(h.score, 4)) for h in worst] == [(old_best, 1.0)]
    assert _ids(index.search(query, 5, ItemFilter(include_topics=frozenset({"fresh"})))) == [
        "new-1"
    ]
    # old metadata no longer matches it either
    old_topics = frozenset(next(i for i in items if i.content_id == old_best).topics)
    assert old_best not in _ids(index.search(query, 2000, ItemFilter(include_topics=old_topics)))

    # re-adding the same id again leaves exactly one live copy
    index.upsert([IndexedItem(old_best, query, topics=("moved",), level=9)])
    hits = index.search(query, 100)
    assert _ids(hits).count(old_best) == 1
    assert len(index) == 2001


def test_upsert_keeps_exact_search_in_sync(items: list[IndexedItem], queries: np.ndarray) -> None:
    index = FaissIndex.build(items[:500])  # small: every search is exact
    query = queries[4]
    index.upsert([IndexedItem("c1", query, topics=("x",), level=1)])
    assert index.search(query, 1)[0].content_id == "c1"
    current = items[:500]
    current[1] = IndexedItem("c1", query, topics=("x",), level=1)
    assert _ids(index.search(query, 30)) == _brute_force(current, query, 30)


def test_save_load_round_trip_gives_identical_results(
    tmp_path: Path, items: list[IndexedItem], queries: np.ndarray
) -> None:
    index = FaissIndex.build(items, exact_threshold=0, exact_k_factor=0)
    index.upsert([IndexedItem("c0", queries[0], topics=("saved",), level=None)])
    index.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx")
    assert len(loaded) == len(index)
    assert loaded.n_deleted == index.n_deleted == 1
    filters = [None, *FILTERS.values(), ItemFilter(include_topics=frozenset({"saved"}))]
    for query in queries[:10]:
        for f in filters:
            assert loaded.search(query, 25, f) == index.search(query, 25, f)
    # it still takes upserts after loading
    loaded.upsert([IndexedItem("after-load", queries[5], topics=("z",), level=2)])
    assert loaded.search(queries[5], 1)[0].content_id == "after-load"
