"""OpenSearchIndex, checked on the exact requests it sends (OpenSearch 2.x k-NN DSL)."""

from __future__ import annotations

import numpy as np
import pytest
from opensearchpy import OpenSearch

from learnrec.retrieval.index import (
    IndexedItem,
    ItemFilter,
    VectorIndex,
    VectorIndexError,
)
from learnrec.retrieval.opensearch_index import (
    BulkIndexError,
    OpenSearchIndex,
    _bulk_failures,
    inner_product_from_score,
    knn_filter,
)
from unit.opensearch_recorder import FakeCluster, Recorded, ip_to_score, make_client

ALIAS = "learnrec-items"


def _v(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# Vectors whose unit versions are exact short decimals, so request bodies are literal.
ITEMS = [
    IndexedItem("c1", _v(3, 4), topics=("algebra", "geometry"), level=1),  # -> [0.6, 0.8]
    IndexedItem("c2", _v(0, 2), topics=("calculus",), level=2),  # -> [0.0, 1.0]
    IndexedItem("c3", _v(-5, 0), topics=(), level=None),  # -> [-1.0, 0.0]
]


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def client(cluster: FakeCluster) -> OpenSearch:
    return make_client(cluster)


@pytest.fixture
def index(client: OpenSearch) -> OpenSearchIndex:
    return OpenSearchIndex(client, ALIAS)


def _deployed(index: OpenSearchIndex, cluster: FakeCluster) -> None:
    """Version v1 created, loaded and aliased; the request log starts empty afterwards."""
    index.create_version_index("v1", 2)
    index.bulk_load("v1", ITEMS)
    index.swap_alias("v1")
    cluster.requests.clear()


def _calls(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in cluster.requests]


def test_satisfies_the_protocol(index: OpenSearchIndex) -> None:
    backend: VectorIndex = index
    assert backend is index


def test_index_names_follow_opensearch_rules(client: OpenSearch) -> None:
    index = OpenSearchIndex(client, ALIAS)
    assert index.index_name("v1") == "learnrec-items-v1"
    assert index.index_name("2024-05-01T12.00Z") == "learnrec-items-2024-05-01t12.00z"
    for bad in ("", "a/b", "a b", "a:b", "a,b", "a#b", 'a"b', "a*", "a?", "a|b", "a\\b"):
        with pytest.raises(ValueError):
            index.index_name(bad)
    with pytest.raises(ValueError, match="255"):
        index.index_name("x" * 250)
    for bad_alias in ("_items", "-items", "+items", "Items", ".", ".."):
        with pytest.raises(ValueError):
            OpenSearchIndex(client, bad_alias)


def test_create_version_index_sends_the_knn_mapping(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    assert index.create_version_index("v1", 64) == "learnrec-items-v1"
    assert cluster.requests == [
        Recorded(
            method="PUT",
            path="/learnrec-items-v1",
            params={},
            body={
                "settings": {"index": {"knn": True, "knn.algo_param.ef_search": 100}},
                "mappings": {
                    "properties": {
                        "vector": {
                            "type": "knn_vector",
                            "dimension": 64,
                            "method": {
                                "name": "hnsw",
                                "engine": "faiss",
                                "space_type": "innerproduct",
                                "parameters": {"m": 32, "ef_construction": 128, "ef_search": 100},
                            },
                        },
                        "content_id": {"type": "keyword"},
                        "topics": {"type": "keyword"},
                        "level": {"type": "integer"},
                    }
                },
            },
        )
    ]


def test_create_existing_index_raises(index: OpenSearchIndex) -> None:
    index.create_version_index("v1", 2)
    with pytest.raises(VectorIndexError, match="resource_already_exists_exception"):
        index.create_version_index("v1", 2)


def test_bulk_load_sends_ndjson_chunks_then_refreshes(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    index.create_version_index("v1", 2)
    cluster.requests.clear()

    assert index.bulk_load("v1", ITEMS, chunk=2) == 3

    assert _calls(cluster) == [
        ("POST", "/learnrec-items-v1/_bulk"),
        ("POST", "/learnrec-items-v1/_bulk"),
        ("POST", "/learnrec-items-v1/_refresh"),
    ]
    assert cluster.requests[0].body == [
        {"index": {"_id": "c1"}},
        {"content_id": "c1", "vector": [0.6, 0.8], "topics": ["algebra", "geometry"], "level": 1},
        {"index": {"_id": "c2"}},
        {"content_id": "c2", "vector": [0.0, 1.0], "topics": ["calculus"], "level": 2},
    ]
    # an item without a level has no level field (so `terms level` never matches it)
    assert cluster.requests[1].body == [
        {"index": {"_id": "c3"}},
        {"content_id": "c3", "vector": [-1.0, 0.0], "topics": []},
    ]
    assert set(cluster.docs["learnrec-items-v1"]) == {"c1", "c2", "c3"}


def test_bulk_item_failure_raises_naming_the_id(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    index.create_version_index("v1", 2)
    cluster.fail_ids["c2"] = (
        400,
        {
            "type": "mapper_parsing_exception",
            "reason": "failed to parse field [vector] of type [knn_vector] in document "
            "with id 'c2'. Preview of field's value: 'null'",
        },
    )
    with pytest.raises(BulkIndexError) as raised:
        index.bulk_load("v1", ITEMS)
    assert isinstance(raised.value, VectorIndexError)
    assert [content_id for content_id, _ in raised.value.failures] == ["c2"]
    assert "c2: status 400, mapper_parsing_exception" in str(raised.value)
    assert "1 documents failed" in str(raised.value)


def test_bulk_status_is_checked_even_when_errors_flag_is_false() -> None:
    batch = ITEMS[:2]
    response = {
        "took": 3,
        "errors": False,
        "items": [
            {"index": {"_index": "i", "_id": "c1", "status": 201, "result": "created"}},
            {"index": {"_index": "i", "_id": "c2", "status": 429}},
        ],
    }
    assert _bulk_failures(response, batch) == [("c2", "status 429, no status")]
    # errors=true with no failing item, or a response missing items: never assume success
    created = {"index": {"_index": "i", "_id": "c1", "status": 201, "result": "created"}}
    response = {"took": 3, "errors": True, "items": [created, created]}
    assert [cid for cid, _ in _bulk_failures(response, batch)] == ["c1", "c2"]
    assert len(_bulk_failures({"took": 1, "errors": False, "items": []}, batch)) == 2


def test_swap_alias_first_time_and_atomic_move(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    index.create_version_index("v1", 2)
    index.create_version_index("v2", 2)
    cluster.requests.clear()

    index.swap_alias("v1")  # no alias yet: GET answers 404, handled
    assert _calls(cluster) == [("GET", "/_alias/learnrec-items"), ("POST", "/_aliases")]
    assert cluster.requests[1].body == {
        "actions": [{"add": {"index": "learnrec-items-v1", "alias": ALIAS}}]
    }
    assert cluster.aliases == {ALIAS: {"learnrec-items-v1"}}

    cluster.requests.clear()
    index.swap_alias("v2")
    assert _calls(cluster) == [("GET", "/_alias/learnrec-items"), ("POST", "/_aliases")]
    assert cluster.requests[1].body == {
        "actions": [
            {"remove": {"index": "learnrec-items-v1", "alias": ALIAS}},
            {"add": {"index": "learnrec-items-v2", "alias": ALIAS}},
        ]
    }
    assert cluster.aliases == {ALIAS: {"learnrec-items-v2"}}

    # swapping to the version already live is a no-op add, never a remove of itself
    cluster.requests.clear()
    index.swap_alias("v2")
    assert cluster.requests[1].body == {
        "actions": [{"add": {"index": "learnrec-items-v2", "alias": ALIAS}}]
    }


def test_swap_alias_to_missing_index_raises(index: OpenSearchIndex) -> None:
    with pytest.raises(VectorIndexError, match="index_not_found_exception"):
        index.swap_alias("v9")


def test_knn_query_with_efficient_filter(index: OpenSearchIndex, cluster: FakeCluster) -> None:
    _deployed(index, cluster)
    item_filter = ItemFilter(
        exclude_ids=frozenset({"c9", "c1"}),
        include_topics=frozenset({"geometry", "algebra"}),
        exclude_topics=frozenset({"calculus"}),
        levels=frozenset({2, 1}),
    )
    index.search(_v(3, 4) * 10, 5, item_filter)  # the query is normalised too
    assert cluster.requests == [
        Recorded(
            method="POST",
            path="/learnrec-items/_search",
            params={},
            body={
                "size": 5,
                "_source": ["content_id"],
                "query": {
                    "knn": {
                        "vector": {
                            "vector": [0.6, 0.8],
                            "k": 5,
                            "filter": {
                                "bool": {
                                    "must": [
                                        {"terms": {"topics": ["algebra", "geometry"]}},
                                        {"terms": {"level": [1, 2]}},
                                    ],
                                    "must_not": [
                                        {"terms": {"topics": ["calculus"]}},
                                        {"terms": {"content_id": ["c1", "c9"]}},
                                    ],
                                }
                            },
                        }
                    }
                },
            },
        )
    ]


def test_no_filter_clause_without_constraints(index: OpenSearchIndex, cluster: FakeCluster) -> None:
    _deployed(index, cluster)
    index.search(_v(1, 0), 3)
    index.search(_v(1, 0), 3, ItemFilter())
    for request in cluster.requests:
        assert request.body["query"] == {"knn": {"vector": {"vector": [1.0, 0.0], "k": 3}}}
    assert knn_filter(ItemFilter(levels=frozenset({3}))) == {
        "bool": {"must": [{"terms": {"level": [3]}}]}
    }
    assert knn_filter(ItemFilter(exclude_ids=frozenset({"x"}))) == {
        "bool": {"must_not": [{"terms": {"content_id": ["x"]}}]}
    }


def test_scores_are_converted_back_to_inner_products(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    _deployed(index, cluster)
    hits = index.search(_v(1, 0), 3)
    # inner products with (1, 0): c1 0.6 (score 1.6), c2 0.0 (score 1.0), c3 -1.0 (score 0.5)
    assert [h.content_id for h in hits] == ["c1", "c2", "c3"]
    assert [h.score for h in hits] == pytest.approx([0.6, 0.0, -1.0])
    filtered = index.search(_v(1, 0), 3, ItemFilter(exclude_topics=frozenset({"geometry"})))
    assert [h.content_id for h in filtered] == ["c2", "c3"]
    assert [h.score for h in filtered] == pytest.approx([0.0, -1.0])


@pytest.mark.parametrize("ip", [-1.0, -0.5, -1e-6, 0.0, 1e-6, 0.25, 1.0])
def test_score_translation_round_trips(ip: float) -> None:
    assert inner_product_from_score(ip_to_score(ip)) == pytest.approx(ip, abs=1e-9)


def test_invalid_scores_raise() -> None:
    for score in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(VectorIndexError):
            inner_product_from_score(score)


def test_upsert_writes_through_the_alias_and_len_counts(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    _deployed(index, cluster)
    index.upsert([IndexedItem("c2", _v(1, 0), topics=("calculus",), level=3)])
    assert _calls(cluster) == [
        ("POST", "/learnrec-items/_bulk"),
        ("POST", "/learnrec-items/_refresh"),
    ]
    assert cluster.requests[0].body == [
        {"index": {"_id": "c2"}},
        {"content_id": "c2", "vector": [1.0, 0.0], "topics": ["calculus"], "level": 3},
    ]
    cluster.requests.clear()
    assert len(index) == 3
    assert _calls(cluster) == [("POST", "/learnrec-items/_count")]
    [best] = index.search(_v(1, 0), 1)
    assert best.content_id == "c2"
    assert best.score == pytest.approx(1.0)
    index.upsert([])  # nothing to send


def test_upsert_through_an_alias_with_two_indices_fails_loudly(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    _deployed(index, cluster)
    index.create_version_index("v2", 2)
    cluster.aliases[ALIAS].add("learnrec-items-v2")
    with pytest.raises(BulkIndexError, match="no write index is defined"):
        index.upsert(ITEMS[:1])


def test_connection_errors_become_vector_index_errors(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    _deployed(index, cluster)
    cluster.down = True
    with pytest.raises(VectorIndexError, match="search learnrec-items failed"):
        index.search(_v(1, 0), 3)
    with pytest.raises(VectorIndexError):
        len(index)
    with pytest.raises(VectorIndexError):
        index.upsert(ITEMS)
    with pytest.raises(VectorIndexError):
        index.create_version_index("v2", 2)
    with pytest.raises(VectorIndexError):
        index.swap_alias("v1")
    with pytest.raises(VectorIndexError):
        index.bulk_load("v1", ITEMS)


def test_missing_alias_and_shard_failures_raise(
    index: OpenSearchIndex, cluster: FakeCluster
) -> None:
    with pytest.raises(VectorIndexError, match="index_not_found_exception"):
        index.search(_v(1, 0), 3)
    _deployed(index, cluster)
    cluster.shard_failures = 1
    with pytest.raises(VectorIndexError, match="1 of 2 shards failed"):
        index.search(_v(1, 0), 3)


def test_invalid_arguments(index: OpenSearchIndex) -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(_v(1, 0), 0)
    with pytest.raises(ValueError, match="zero vector"):
        index.search(_v(0, 0), 3)
    with pytest.raises(ValueError, match="dimension"):
        index.create_version_index("v1", 0)
    with pytest.raises(ValueError, match="chunk"):
        index.bulk_load("v1", ITEMS, chunk=0)
