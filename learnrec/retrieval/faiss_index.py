"""The embedded vector index: faiss HNSW over unit vectors, with filters pushed into search.

Serving runs inside Lambda, so the index lives in process memory and every request pays
only for its own search. Filters behave as OpenSearch's efficient k-NN filtering does:
the filter becomes a set of allowed positions first (vectorised numpy over precomputed
per-item metadata, never a per-request loop over items), then

- if few items are allowed, an exact dot product over just those vectors is both cheaper
  and exact, so that is what runs;
- otherwise HNSW searches with an ``IDSelectorBitmap`` so that only allowed items can
  become hits; when a restrictive filter starves the graph walk and it returns fewer than
  ``k`` hits although more allowed items exist, the exact search fills the answer, so a
  filter never silently shortens a recommendation list.

HNSW cannot delete. Replacing an item marks its old position deleted (excluded from every
search through the same mask) and appends the new vector; positions are therefore
append-only and double as faiss labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from learnrec.bundle import INDEX_GRAPH_FILE as _INDEX_FILE
from learnrec.bundle import INDEX_META_FILE as _META_FILE
from learnrec.retrieval.candidates import ExactIndex, flatten_topics, infer_dim
from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit, VectorIndexError

__all__ = ["FaissIndex"]

_FORMAT_VERSION = 1


def _faiss() -> Any:
    """faiss, imported on first use, so that importing this module (and serving with
    OpenSearch, whose package ships no faiss) never loads it.

    faiss ships stubs that are narrower than its Python wrappers (IDSelectorBitmap
    accepts a single numpy bitmap, search accepts ``params=``); talk to it through Any.
    """
    import faiss

    return faiss


class FaissIndex(ExactIndex):
    """Approximate maximum-inner-product search (faiss HNSW) with exact filtered fallback.

    Implements :class:`learnrec.retrieval.index.VectorIndex`; the per-item metadata,
    filter masks and exact search are :class:`ExactIndex`'s, positions double as faiss
    labels. Not safe for concurrent writers; concurrent searches are fine (a Lambda
    container serves one request at a time anyway).
    """

    def __init__(
        self,
        dim: int,
        *,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        exact_threshold: int = 1000,
        exact_k_factor: int = 50,
        max_filtered_ef: int = 1024,
    ) -> None:
        """An empty index of ``dim``-dimensional vectors.

        A search whose filter allows at most ``max(k * exact_k_factor, exact_threshold)``
        items runs exactly over those items instead of walking the graph, and so does one
        so selective that the graph walk would need an efSearch above ``max_filtered_ef``
        (efSearch grows as ``max(ef_search, k) / allowed_fraction``).
        """
        super().__init__(dim)
        if m < 2 or ef_construction <= 0 or ef_search <= 0:
            raise ValueError("m must be >= 2 and ef_construction, ef_search positive")
        if exact_threshold < 0 or exact_k_factor < 0 or max_filtered_ef <= 0:
            raise ValueError("exact thresholds must be >= 0 and max_filtered_ef positive")
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_threshold = exact_threshold
        self.exact_k_factor = exact_k_factor
        self.max_filtered_ef = max_filtered_ef
        faiss = _faiss()
        try:
            self._index: Any = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = ef_construction
            self._index.hnsw.efSearch = ef_search
        except RuntimeError as exc:  # faiss turns C++ exceptions into RuntimeError
            raise VectorIndexError(f"faiss could not create the index: {exc}") from exc

    # ---------------------------------------------------------------- construction

    def _init_metadata(self, capacity: int) -> None:
        super()._init_metadata(capacity)  # positions used (live + deleted) == faiss ntotal
        self._live_bitmap: np.ndarray | None = None  # cached selector bitmap when deletions

    @classmethod
    def build(
        cls,
        items: Sequence[IndexedItem],
        m: int = 32,
        ef_search: int = 64,
        *,
        dim: int | None = None,
        ef_construction: int = 80,
        exact_threshold: int = 1000,
        exact_k_factor: int = 50,
        max_filtered_ef: int = 1024,
    ) -> FaissIndex:
        """An index holding ``items`` (the dimension comes from them, or ``dim`` if empty).

        A content id given twice keeps its last occurrence, as two upserts would.
        """
        index = cls(
            infer_dim(items, dim),
            m=m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            exact_threshold=exact_threshold,
            exact_k_factor=exact_k_factor,
            max_filtered_ef=max_filtered_ef,
        )
        index.upsert(items)
        return index

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        """Append ``items``; an id already indexed has its old position marked deleted.

        The graph keeps the old node (HNSW cannot remove one) but every search excludes
        it through the allowed mask, so the old vector is never returned.
        """
        if not items:
            return
        vectors = self._unit_vectors(items)
        try:
            self._index.add(vectors)
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss could not add {len(items)} vectors: {exc}") from exc
        self._append(vectors, items)
        self._live_bitmap = None

    # ---------------------------------------------------------------- queries

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Up to ``k`` hits, best first by inner product, all passing ``item_filter``."""
        prepared = self._prepare(query, k, item_filter)
        if prepared is None:
            return []
        q, k, mask, allowed = prepared
        unfiltered = item_filter is None or item_filter.is_empty
        # The filtered walk also visits disallowed nodes, so it needs a candidate list
        # about 1/fraction times longer to keep its recall; past max_filtered_ef the walk
        # costs more than exactly scoring the (then few) allowed items.
        base_ef = max(self.ef_search, k)
        ef = max(base_ef, math.ceil(base_ef * self._size / allowed))
        if allowed <= max(k * self.exact_k_factor, self.exact_threshold) or ef > max(
            self.max_filtered_ef, base_ef
        ):
            return self._exact(q, k, mask, allowed)
        hits = self._hnsw(q, k, ef, mask, cache_bitmap=unfiltered)
        if len(hits) < k:
            # The filtered graph walk ran dry before finding k allowed items.
            return self._exact(q, k, mask, allowed)
        return hits

    def _hnsw(
        self, q: np.ndarray, k: int, ef: int, mask: np.ndarray | None, *, cache_bitmap: bool
    ) -> list[SearchHit]:
        """Graph search; with a mask only allowed positions may become hits."""
        faiss = _faiss()
        try:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            selector = None
            if mask is not None:
                bitmap = self._live_bitmap if cache_bitmap else None
                if bitmap is None:
                    bitmap = np.packbits(mask, bitorder="little")
                    if cache_bitmap:
                        self._live_bitmap = bitmap
                # The selector keeps a raw pointer into ``bitmap``; both stay referenced
                # (locals, and faiss's wrapper) until the search returns.
                selector = faiss.IDSelectorBitmap(bitmap)
                params.sel = selector
            distances, labels = self._index.search(q, k, params=params)
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss search failed: {exc}") from exc
        found = labels[0] >= 0
        return self._hits(labels[0][found], distances[0][found])

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write ``path/index.faiss`` (the graph) and ``path/meta.npz`` (ids, filters).

        The sidecar is plain arrays (no pickle), so loading it cannot run code.
        Vectors are not duplicated there: the flat HNSW storage holds them exactly.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        size = self._size
        topic_counts = np.fromiter((len(t) for t in self._topics), dtype=np.int64, count=size)
        topic_offsets = np.concatenate([[0], np.cumsum(topic_counts)]).astype(np.int64)
        try:
            _faiss().write_index(self._index, str(directory / _INDEX_FILE))
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss could not write {directory}: {exc}") from exc
        np.savez(
            directory / _META_FILE,
            format_version=np.int64(_FORMAT_VERSION),
            params=np.asarray(
                [
                    self.dim,
                    self.m,
                    self.ef_construction,
                    self.ef_search,
                    self.exact_threshold,
                    self.exact_k_factor,
                    self.max_filtered_ef,
                ],
                dtype=np.int64,
            ),
            content_ids=np.asarray(self._ids, dtype=np.str_),
            topic_offsets=topic_offsets,
            topics=np.asarray(flatten_topics(self._topics), dtype=np.str_),
            levels=self._levels[:size],
            has_level=self._has_level[:size],
            live=self._live[:size],
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        ef_search: int | None = None,
        exact_threshold: int | None = None,
        exact_k_factor: int | None = None,
        max_filtered_ef: int | None = None,
    ) -> FaissIndex:
        """Read what :meth:`save` wrote; query-time parameters may be overridden."""
        directory = Path(path)
        arrays = cls._read_metadata(directory)
        dim, m, ef_construction, saved_ef, saved_threshold, saved_factor, saved_max_ef = (
            int(v) for v in arrays["params"]
        )
        index = cls(
            dim,
            m=m,
            ef_construction=ef_construction,
            ef_search=saved_ef if ef_search is None else ef_search,
            exact_threshold=saved_threshold if exact_threshold is None else exact_threshold,
            exact_k_factor=saved_factor if exact_k_factor is None else exact_k_factor,
            max_filtered_ef=saved_max_ef if max_filtered_ef is None else max_filtered_ef,
        )
        faiss = _faiss()
        try:
            graph = faiss.read_index(str(directory / _INDEX_FILE))
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss could not read {directory}: {exc}") from exc
        ids: list[str] = arrays["content_ids"].tolist()
        size = len(ids)
        if not isinstance(graph, faiss.IndexHNSWFlat) or graph.ntotal != size or graph.d != dim:
            raise VectorIndexError(f"index file and metadata in {directory} do not match")
        graph.hnsw.efSearch = index.ef_search
        index._index = graph
        vectors = graph.reconstruct_n(0, size) if size else np.empty((0, dim), np.float32)
        index._restore(ids, vectors, *_metadata_arrays(arrays))
        return index

    @staticmethod
    def _read_metadata(directory: Path) -> dict[str, np.ndarray]:
        """The sidecar's arrays, checked for the format this code writes."""
        try:
            with np.load(directory / _META_FILE, allow_pickle=False) as meta:
                arrays = {name: meta[name] for name in meta.files}
        except (OSError, ValueError, KeyError) as exc:
            raise VectorIndexError(f"cannot read index metadata in {directory}: {exc}") from exc
        if int(arrays["format_version"]) != _FORMAT_VERSION:
            raise VectorIndexError(f"unsupported index format {int(arrays['format_version'])}")
        return arrays

    @classmethod
    def load_exact(
        cls, path: str | Path, vectors_of: Callable[[list[str]], np.ndarray]
    ) -> ExactIndex:
        """The saved index's items and filter fields for exact search, without faiss.

        Only the sidecar is read (vectorised, milliseconds at 100k items); the graph,
        which holds the vectors, needs faiss, so ``vectors_of(content_ids)`` supplies
        them, one row per id (the bundle's item embeddings, say).
        """
        arrays = cls._read_metadata(Path(path))
        ids: list[str] = arrays["content_ids"].tolist()
        return ExactIndex.from_arrays(ids, vectors_of(ids), *_metadata_arrays(arrays))


def _metadata_arrays(
    arrays: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Topic offsets, flat topics, levels, has-level and live flags of saved metadata."""
    return (
        arrays["topic_offsets"],
        arrays["topics"],
        arrays["levels"],
        arrays["has_level"],
        arrays["live"],
    )
