"""OpenSearch k-NN backend: one index per model version behind an alias.

Each model version gets its own index (``{alias}-{version}``); it is filled with the
``_bulk`` API and only then the alias is moved onto it in one atomic ``_aliases`` call,
so serving never reads a half-loaded index and rolling back is another alias swap.

Search uses the k-NN plugin's *efficient filtering* (the filter sits inside the ``knn``
clause; faiss engine, OpenSearch 2.9+): the filter is applied during the graph search,
so ``k`` results come back whenever ``k`` items pass it, as with the faiss backend.
A ``bool`` filter next to the ``knn`` clause would post-filter and run short.

Scores come back in OpenSearch's scale; they are converted to the raw inner product so
that callers see the same number whichever backend answered.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    ImproperlyConfigured,
    NotFoundError,
    OpenSearchException,
    RequestError,
)

from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit, VectorIndexError

__all__ = [
    "BULK_TIMEOUT_S",
    "QUERY_TIMEOUT_S",
    "BulkIndexError",
    "OpenSearchIndex",
    "inner_product_from_score",
    "knn_filter",
    "open_index",
    "signed_client",
]

# A query must degrade the response rather than time out the request; loading a
# version's index sends _bulk chunks of 500 vectors, which a busy domain takes longer on.
QUERY_TIMEOUT_S = 2.0
BULK_TIMEOUT_S = 60.0

# OpenSearch index names: lowercase, none of \ / * ? " < > | , # : or space, not starting
# with _ - +, not "." or "..", at most 255 bytes.
_FORBIDDEN = re.compile(r'[\\/*?"<>|,#:\s]')
_MAX_NAME_BYTES = 255
_CLIENT_ERRORS = (OpenSearchException, ImproperlyConfigured)


def signed_client(
    endpoint: str,
    region: str | None = None,
    *,
    timeout: float = QUERY_TIMEOUT_S,
    max_retries: int = 1,
) -> OpenSearch:
    """A client for an Amazon OpenSearch Service domain, signing with the caller's IAM
    role (SigV4, service ``es``): the API, the pipeline function and the jobs alike."""
    import boto3
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    session = boto3.Session()
    auth = AWSV4SignerAuth(session.get_credentials(), region or session.region_name, "es")
    host = endpoint.removeprefix("https://").rstrip("/")
    return OpenSearch(
        hosts=[{"host": host, "port": 443}],
        http_auth=auth,
        use_ssl=True,
        verify_certs=True,
        connection_class=RequestsHttpConnection,
        timeout=timeout,
        max_retries=max_retries,
    )


def open_index(
    endpoint: str | None,
    alias: str,
    client: OpenSearch | None = None,
    *,
    timeout: float = QUERY_TIMEOUT_S,
) -> OpenSearchIndex:
    """The index behind ``alias``, through ``client`` or a signed client for ``endpoint``."""
    if client is None:
        if not endpoint:
            raise VectorIndexError("VECTOR_INDEX=opensearch needs OPENSEARCH_ENDPOINT")
        client = signed_client(endpoint, timeout=timeout)
    return OpenSearchIndex(client, alias)


class BulkIndexError(VectorIndexError):
    """Some documents of a ``_bulk`` request were rejected; ``failures`` has (id, reason)."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        shown = "; ".join(f"{content_id}: {reason}" for content_id, reason in failures[:20])
        more = f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""
        super().__init__(f"{len(failures)} documents failed to index: {shown}{more}")


def validate_index_name(name: str) -> str:
    """Return ``name`` if OpenSearch accepts it as an index or alias name, else ValueError.

    Checked locally so a bad version string fails before anything is written.
    """
    if not name or name in {".", ".."}:
        raise ValueError(f"invalid index name {name!r}")
    if name != name.lower():
        raise ValueError(f"index name {name!r} must be lowercase")
    if name[0] in "_-+":
        raise ValueError(f"index name {name!r} must not start with '_', '-' or '+'")
    if _FORBIDDEN.search(name):
        raise ValueError(f'index name {name!r} contains one of \\ / * ? " < > | , # : or space')
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ValueError(f"index name {name!r} is longer than {_MAX_NAME_BYTES} bytes")
    return name


def inner_product_from_score(score: float) -> float:
    """Invert the k-NN plugin's ``innerproduct`` score translation.

    The plugin scores a raw inner product ``ip`` as ``1 + ip`` when ``ip >= 0`` and as
    ``1 / (1 - ip)`` when ``ip < 0`` (so scores stay positive, higher is better); hence a
    score >= 1 came from a non-negative ``ip``.
    """
    if not score > 0 or not math.isfinite(score):
        raise VectorIndexError(f"unexpected k-NN score {score!r} for space innerproduct")
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score


def knn_filter(item_filter: ItemFilter | None) -> dict[str, Any] | None:
    """The ``filter`` of a k-NN query for ``item_filter``; None when it has no constraint.

    Values are sorted so the same filter always produces the same request (cacheable,
    testable).
    """
    if item_filter is None or item_filter.is_empty:
        return None
    must: list[dict[str, Any]] = []
    must_not: list[dict[str, Any]] = []
    if item_filter.include_topics:
        must.append({"terms": {"topics": sorted(item_filter.include_topics)}})
    if item_filter.levels:
        must.append({"terms": {"level": sorted(item_filter.levels)}})
    if item_filter.exclude_topics:
        must_not.append({"terms": {"topics": sorted(item_filter.exclude_topics)}})
    if item_filter.exclude_ids:
        must_not.append({"terms": {"content_id": sorted(item_filter.exclude_ids)}})
    clauses: dict[str, Any] = {}
    if must:
        clauses["must"] = must
    if must_not:
        clauses["must_not"] = must_not
    return {"bool": clauses}


def _unit_vector(vector: np.ndarray, what: str) -> list[float]:
    """L2-normalised float32 vector as JSON-ready floats.

    Inner product equals cosine only on unit vectors, as in the faiss backend. Each
    component is written with the shortest decimal that reads back as the same float32
    (OpenSearch stores float32), which keeps bulk bodies about half the size of float64
    reprs without losing anything.
    """
    row = np.asarray(vector, dtype=np.float32).ravel()
    if row.size == 0 or not np.isfinite(row).all():
        raise ValueError(f"{what}: vector must be non-empty and finite")
    norm = float(np.linalg.norm(row))
    if norm == 0.0:
        raise ValueError(f"{what}: zero vector has no direction")
    return [float(str(x)) for x in (row / np.float32(norm)).astype(np.float32)]


class OpenSearchIndex:
    """:class:`learnrec.retrieval.index.VectorIndex` over an OpenSearch k-NN alias.

    The caller builds the client (endpoint, auth, SigV4, timeouts, retries); this class
    only speaks the index, bulk, alias and search APIs. Every client failure surfaces as
    :class:`VectorIndexError`, so serving can fall back and say why.
    """

    def __init__(
        self,
        client: OpenSearch,
        alias: str,
        *,
        m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 100,
    ) -> None:
        self.client = client
        self.alias = validate_index_name(alias)
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search

    # ---------------------------------------------------------------- versions

    def index_name(self, version: str) -> str:
        """The concrete index of a model version: ``{alias}-{version}``, lowercased."""
        if not version:
            raise ValueError("version must not be empty")
        return validate_index_name(f"{self.alias}-{version}".lower())

    def index_body(self, dimension: int) -> dict[str, Any]:
        """Settings and mappings of a version index (the k-NN plugin's 2.x DSL).

        ``innerproduct`` on unit vectors ranks as cosine and is what faiss serves locally.
        ``ef_search`` is set both ways: the faiss engine reads the method parameter, the
        ``index.knn.algo_param.ef_search`` setting only reached nmslib in 2.x.
        """
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        return {
            "settings": {
                "index": {"knn": True, "knn.algo_param.ef_search": self.ef_search},
            },
            "mappings": {
                "properties": {
                    "vector": {
                        "type": "knn_vector",
                        "dimension": dimension,
                        "method": {
                            "name": "hnsw",
                            "engine": "faiss",
                            "space_type": "innerproduct",
                            "parameters": {
                                "m": self.m,
                                "ef_construction": self.ef_construction,
                                "ef_search": self.ef_search,
                            },
                        },
                    },
                    "content_id": {"type": "keyword"},
                    "topics": {"type": "keyword"},
                    "level": {"type": "integer"},
                }
            },
        }

    def create_version_index(self, version: str, dimension: int, exist_ok: bool = False) -> str:
        """Create the (empty) index of ``version``; returns its name.

        ``exist_ok``: an index of that name already there is kept (a retried build of the
        same version, whose bulk load then overwrites the same documents by id).
        """
        name = self.index_name(version)
        body = self.index_body(dimension)
        try:
            self.client.indices.create(index=name, body=body)
        except RequestError as exc:
            if not (exist_ok and exc.error == "resource_already_exists_exception"):
                raise VectorIndexError(f"OpenSearch create index {name} failed: {exc}") from exc
        except _CLIENT_ERRORS as exc:
            raise VectorIndexError(f"OpenSearch create index {name} failed: {exc}") from exc
        return name

    def bulk_load(self, version: str, items: Sequence[IndexedItem], chunk: int = 500) -> int:
        """Index ``items`` into the version index in ``_bulk`` chunks, then refresh it.

        Every chunk's response is checked (the ``errors`` flag and each item's status);
        failures across all chunks are collected and raised together as
        :class:`BulkIndexError`, before any alias could point at an incomplete index.
        Returns the number of documents indexed.
        """
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        name = self.index_name(version)
        failures = self._bulk(name, items, chunk)
        self.refresh(name)
        if failures:
            raise BulkIndexError(failures)
        return len(items)

    def swap_alias(self, version: str) -> None:
        """Point the alias at ``version``'s index, atomically, detaching it from all others."""
        new = self.index_name(version)
        try:
            holders: dict[str, Any] = self.client.indices.get_alias(name=self.alias)
        except NotFoundError:
            holders = {}  # first deployment: no index holds the alias yet
        except _CLIENT_ERRORS as exc:
            raise VectorIndexError(f"OpenSearch get alias {self.alias} failed: {exc}") from exc
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": self.alias}} for old in sorted(holders) if old != new
        ]
        actions.append({"add": {"index": new, "alias": self.alias}})
        self._call(
            f"swap alias {self.alias} to {new}",
            lambda: self.client.indices.update_aliases(body={"actions": actions}),
        )

    def refresh(self, index: str | None = None) -> None:
        """Make indexed documents searchable now rather than at the next refresh interval."""
        target = index or self.alias
        self._call(f"refresh {target}", lambda: self.client.indices.refresh(index=target))

    # ---------------------------------------------------------------- VectorIndex

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Up to ``k`` hits from the alias, best first, filtered during the k-NN search."""
        if k <= 0:
            raise ValueError("k must be positive")
        knn: dict[str, Any] = {"vector": _unit_vector(query, "query"), "k": k}
        knn_filter_clause = knn_filter(item_filter)
        if knn_filter_clause is not None:
            knn["filter"] = knn_filter_clause
        body = {"size": k, "_source": ["content_id"], "query": {"knn": {"vector": knn}}}
        response = self._call(
            f"search {self.alias}", lambda: self.client.search(index=self.alias, body=body)
        )
        shards = response.get("_shards", {})
        if shards.get("failed", 0):
            reasons = [
                str(failure.get("reason", failure)) for failure in shards.get("failures", [])
            ]
            raise VectorIndexError(
                f"search {self.alias}: {shards['failed']} of {shards.get('total')} shards "
                f"failed: {'; '.join(reasons)[:1000]}"
            )
        return [
            SearchHit(
                content_id=str(hit.get("_source", {}).get("content_id", hit["_id"])),
                score=inner_product_from_score(float(hit["_score"])),
            )
            for hit in response["hits"]["hits"]
        ]

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        """Index (or overwrite, same ``_id``) ``items`` through the alias, then refresh.

        Bulk writes through an alias go to its single index; if the alias spans several,
        OpenSearch rejects each item and this raises :class:`BulkIndexError`.
        """
        if not items:
            return
        failures = self._bulk(self.alias, items, 500)
        self.refresh(self.alias)
        if failures:
            raise BulkIndexError(failures)

    def __len__(self) -> int:
        """Documents behind the alias (``_count``)."""
        response = self._call(f"count {self.alias}", lambda: self.client.count(index=self.alias))
        return int(response["count"])

    # ---------------------------------------------------------------- internals

    def _bulk(self, index: str, items: Sequence[IndexedItem], chunk: int) -> list[tuple[str, str]]:
        failures: list[tuple[str, str]] = []
        for start in range(0, len(items), chunk):
            batch = items[start : start + chunk]
            body = "".join(_bulk_lines(batch))
            response = self._call(
                f"bulk into {index}", lambda body=body: self.client.bulk(body=body, index=index)
            )
            failures.extend(_bulk_failures(response, batch))
        return failures

    def _call(self, what: str, request: Any) -> Any:
        """Run one client request, turning any client/transport failure into VectorIndexError."""
        try:
            return request()
        except _CLIENT_ERRORS as exc:
            raise VectorIndexError(f"OpenSearch {what} failed: {exc}") from exc


def _bulk_lines(items: Sequence[IndexedItem]) -> Iterator[str]:
    """NDJSON pairs: an ``index`` action (``_id`` = content id) and the document."""
    for item in items:
        document: dict[str, Any] = {
            "content_id": item.content_id,
            "vector": _unit_vector(item.vector, f"item {item.content_id}"),
            "topics": list(item.topics),
        }
        if item.level is not None:
            document["level"] = item.level
        yield json.dumps({"index": {"_id": item.content_id}}, separators=(",", ":")) + "\n"
        yield json.dumps(document, separators=(",", ":")) + "\n"


def _bulk_failures(response: Any, batch: Sequence[IndexedItem]) -> list[tuple[str, str]]:
    """(content id, reason) for every document of ``batch`` the bulk response rejected.

    Both signals are read: the top-level ``errors`` flag and each item's status. If they
    disagree, or the response does not account for every document, that is a failure too
    (never assume a document made it).
    """
    results = response.get("items") if isinstance(response, dict) else None
    if not isinstance(results, list) or len(results) != len(batch):
        got = len(results) if isinstance(results, list) else "no"
        return [
            (item.content_id, f"bulk response has {got} items for {len(batch)}") for item in batch
        ]
    failures: list[tuple[str, str]] = []
    for item, result in zip(batch, results, strict=True):
        outcome: dict[str, Any] = (
            next(iter(result.values()), {}) if isinstance(result, dict) else {}
        )
        status = outcome.get("status", 0)
        if "error" in outcome or not 200 <= status < 300:
            error = outcome.get("error")
            if isinstance(error, dict):
                reason = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
            else:
                reason = str(error) if error else "no status"
            failures.append(
                (str(outcome.get("_id", item.content_id)), f"status {status}, {reason}")
            )
    if response.get("errors") and not failures:
        failures = [(item.content_id, "bulk reported errors but no item failed") for item in batch]
    return failures
