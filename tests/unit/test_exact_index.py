"""ExactIndex: the numpy-only index serving falls back to, against item-by-item filtering.

It must return what the approximate indexes approximate, through the same filters, and
load a saved faiss index's items without faiss (the api package ships none).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learnrec.retrieval.candidates import ExactIndex
from learnrec.retrieval.faiss_index import FaissIndex
from learnrec.retrieval.index import IndexedItem, ItemFilter, VectorIndex
from unit.no_faiss import BLOCK_FAISS

DIM = 16
TOPICS = [f"t{i}" for i in range(8)]


def _items(n: int = 600, seed: int = 3) -> list[IndexedItem]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return [
        IndexedItem(
            f"c{i}",
            vectors[i],
            tuple(TOPICS[j] for j in rng.choice(len(TOPICS), 2, replace=False)),
            None if i % 7 == 0 else int(rng.integers(1, 4)),
        )
        for i in range(n)
    ]


def _reference(items: list[IndexedItem], query: np.ndarray, k: int, f: ItemFilter) -> list[str]:
    """Score every item, keep those ``ItemFilter.allows``, best k by cosine."""
    q = query / np.linalg.norm(query)
    scored = [
        (float(np.dot(item.vector / np.linalg.norm(item.vector), q)), item.content_id)
        for item in items
        if f.allows(item.content_id, item.topics, item.level)
    ]
    return [cid for _, cid in sorted(scored, key=lambda pair: -pair[0])[:k]]


FILTERS = [
    ItemFilter(),
    ItemFilter(include_topics=frozenset({"t1", "t2"})),
    ItemFilter(exclude_topics=frozenset({"t3"}), levels=frozenset({2})),
    ItemFilter(exclude_ids=frozenset({f"c{i}" for i in range(0, 600, 2)})),
    ItemFilter(include_topics=frozenset({"t0"}), levels=frozenset({1, 3})),
]


@pytest.mark.parametrize("item_filter", FILTERS, ids=range(len(FILTERS)))
def test_every_filter_matches_item_by_item_scoring(item_filter: ItemFilter) -> None:
    items = _items()
    index: VectorIndex = ExactIndex.build(items)  # mypy checks the protocol
    assert len(index) == len(items)
    query = np.random.default_rng(11).normal(size=DIM).astype(np.float32)
    hits = index.search(query, 20, item_filter)
    assert [h.content_id for h in hits] == _reference(items, query, 20, item_filter)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_an_upsert_replaces_the_old_vector_and_fields() -> None:
    items = _items(50)
    index = ExactIndex.build(items)
    query = np.asarray(items[5].vector) * -1  # c5 is now the worst match
    moved = IndexedItem("c5", query, ("new-topic",), 9)
    index.upsert([moved])
    assert len(index) == 50 and index.n_deleted == 1
    (best,) = index.search(query, 1)
    assert best.content_id == "c5" and best.score == pytest.approx(1.0, abs=1e-5)
    only = index.search(query, 5, ItemFilter(include_topics=frozenset({"new-topic"})))
    assert [h.content_id for h in only] == ["c5"]
    assert index.search(query, 5, ItemFilter(levels=frozenset({9}))) == only
    gone = ItemFilter(include_topics=frozenset(items[5].topics), exclude_ids=frozenset())
    assert "c5" not in {h.content_id for h in index.search(query, 50, gone)}


def test_nothing_allowed_or_empty_answers_nothing() -> None:
    index = ExactIndex(DIM)
    assert index.search(np.ones(DIM, np.float32), 3) == []
    index.upsert(_items(10))
    assert index.search(np.ones(DIM, np.float32), 3, ItemFilter(levels=frozenset({42}))) == []
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(np.ones(DIM, np.float32), 0)


def test_a_saved_faiss_index_loads_for_exact_search_with_the_same_answers(
    tmp_path: Path,
) -> None:
    items = _items()
    built = FaissIndex.build(items)
    built.upsert([IndexedItem("c1", items[2].vector, ("t7",), 2)])  # a tombstone too
    built.save(tmp_path / "faiss")
    vectors = {item.content_id: np.asarray(item.vector) for item in items}
    vectors["c1"] = np.asarray(items[2].vector)
    exact = FaissIndex.load_exact(
        tmp_path / "faiss", lambda ids: np.stack([vectors[i] for i in ids])
    )
    assert len(exact) == len(built) and exact.n_deleted == 1
    query = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
    for item_filter in FILTERS:
        # 600 items: below the exact threshold, so faiss answers exactly too.
        assert exact.search(query, 15, item_filter) == built.search(query, 15, item_filter)


BLOCKED_LOAD = (
    BLOCK_FAISS
    + r"""
import numpy as np
from learnrec.retrieval.faiss_index import FaissIndex

directory, vectors = sys.argv[1], np.load(sys.argv[2])
exact = FaissIndex.load_exact(directory, lambda ids: vectors[[int(i[1:]) for i in ids]])
hits = exact.search(np.ones(vectors.shape[1], np.float32), 3)
try:
    FaissIndex.load(directory)
    graph = "loaded"
except ModuleNotFoundError:
    graph = "refused"
print(json.dumps({"hits": [h.content_id for h in hits], "graph": graph,
                  "faiss": any(m.split(".")[0] == "faiss" for m in sys.modules)}))
"""
)


def test_exact_loading_needs_no_faiss(tmp_path: Path) -> None:
    items = _items(40)
    FaissIndex.build(items).save(tmp_path / "faiss")
    np.save(tmp_path / "vectors.npy", np.stack([np.asarray(i.vector) for i in items]))
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED_LOAD,
            str(tmp_path / "faiss"),
            str(tmp_path / "vectors.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout)
    query = np.ones(DIM, np.float32)
    assert answer == {
        "hits": _reference(items, query, 3, ItemFilter()),
        "graph": "refused",  # the blocker works: the graph itself does need faiss
        "faiss": False,
    }
