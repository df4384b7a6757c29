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
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np

from learnrec.bundle import INDEX_GRAPH_FILE as _INDEX_FILE
from learnrec.bundle import INDEX_META_FILE as _META_FILE
from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit, VectorIndexError

__all__ = ["FaissIndex"]

_FORMAT_VERSION = 1
_K = TypeVar("_K", str, int)

# faiss ships stubs that are narrower than its Python wrappers (IDSelectorBitmap accepts
# a single numpy bitmap, search accepts ``params=``); talk to it through Any.
_faiss: Any = faiss


def _unit_rows(vectors: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    """Validate [n, d] vectors and L2-normalise them as contiguous float32.

    Inner product equals cosine only on unit vectors, and scores are documented as
    cosines whatever the backend, so normalisation happens here rather than trusting
    callers. Zero or non-finite vectors have no direction and are rejected.
    """
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"{what}: expected a non-empty [n, d] array, got shape {rows.shape}")
    if dim is not None and rows.shape[1] != dim:
        raise ValueError(f"{what}: dimension {rows.shape[1]} != index dimension {dim}")
    if not np.isfinite(rows).all():
        raise ValueError(f"{what}: vectors must be finite")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what}: zero vectors have no direction")
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


class FaissIndex:
    """Approximate maximum-inner-product search (faiss HNSW) with exact filtered fallback.

    Implements :class:`learnrec.retrieval.index.VectorIndex`. Not safe for concurrent
    writers; concurrent searches are fine (a Lambda container serves one request at a
    time anyway).
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
        if dim <= 0:
            raise ValueError("dim must be positive")
        if m < 2 or ef_construction <= 0 or ef_search <= 0:
            raise ValueError("m must be >= 2 and ef_construction, ef_search positive")
        if exact_threshold < 0 or exact_k_factor < 0 or max_filtered_ef <= 0:
            raise ValueError("exact thresholds must be >= 0 and max_filtered_ef positive")
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_threshold = exact_threshold
        self.exact_k_factor = exact_k_factor
        self.max_filtered_ef = max_filtered_ef
        try:
            self._index: Any = _faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = ef_construction
            self._index.hnsw.efSearch = ef_search
        except RuntimeError as exc:  # faiss turns C++ exceptions into RuntimeError
            raise VectorIndexError(f"faiss could not create the index: {exc}") from exc
        self._init_metadata(capacity=0)

    # ---------------------------------------------------------------- construction

    def _init_metadata(self, capacity: int) -> None:
        """Per-position arrays, grown geometrically so upserts stay amortised O(batch)."""
        self._size = 0  # positions used (live + deleted) == faiss ntotal
        self._vectors = np.empty((capacity, self.dim), dtype=np.float32)
        self._levels = np.zeros(capacity, dtype=np.int64)
        self._has_level = np.zeros(capacity, dtype=bool)
        self._live = np.zeros(capacity, dtype=bool)
        self._ids: list[str] = []
        # Per-position topic tuples, only needed to save or to grow the index; a loaded
        # index keeps the saved (offsets, flat topics) arrays until then.
        self._topic_tuples: list[tuple[str, ...]] | None = []
        self._packed_topics: tuple[np.ndarray, np.ndarray] | None = None
        self._position_of: dict[str, int] = {}
        # Inverted indexes (postings): value -> positions holding it, possibly deleted ones.
        self._topic_positions: dict[str, np.ndarray] = {}
        self._level_positions: dict[int, np.ndarray] = {}
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
        if dim is None:
            if not items:
                raise ValueError("cannot infer the dimension of an empty index; pass dim")
            dim = int(np.asarray(items[0].vector).shape[-1])
        index = cls(
            dim,
            m=m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            exact_threshold=exact_threshold,
            exact_k_factor=exact_k_factor,
            max_filtered_ef=max_filtered_ef,
        )
        index.upsert(items)
        return index

    def _grow(self, needed: int) -> None:
        capacity = len(self._live)
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 1024)

        def grown(array: np.ndarray) -> np.ndarray:
            out = np.zeros((new_capacity, *array.shape[1:]), dtype=array.dtype)
            out[: self._size] = array[: self._size]
            return out

        self._vectors = grown(self._vectors)
        self._levels = grown(self._levels)
        self._has_level = grown(self._has_level)
        self._live = grown(self._live)

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        """Append ``items``; an id already indexed has its old position marked deleted.

        The graph keeps the old node (HNSW cannot remove one) but every search excludes
        it through the allowed mask, so the old vector is never returned.
        """
        if not items:
            return
        vectors = _unit_rows(
            np.stack([np.asarray(item.vector, dtype=np.float32).ravel() for item in items]),
            self.dim,
            "upsert",
        )
        start = self._size
        try:
            self._index.add(vectors)
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss could not add {len(items)} vectors: {exc}") from exc
        end = start + len(items)
        self._grow(end)
        self._vectors[start:end] = vectors
        new_topic_positions: defaultdict[str, list[int]] = defaultdict(list)
        new_level_positions: defaultdict[int, list[int]] = defaultdict(list)
        topic_lists = self._topics
        for offset, item in enumerate(items):
            position = start + offset
            old = self._position_of.get(item.content_id)
            if old is not None:
                self._live[old] = False
            self._position_of[item.content_id] = position
            self._ids.append(item.content_id)
            topics = tuple(dict.fromkeys(item.topics))  # dedupe, keep order
            topic_lists.append(topics)
            for topic in topics:
                new_topic_positions[topic].append(position)
            self._live[position] = True
            if item.level is not None:
                level = int(item.level)
                self._levels[position] = level
                self._has_level[position] = True
                new_level_positions[level].append(position)
        self._size = end
        _extend_postings(self._topic_positions, new_topic_positions)
        _extend_postings(self._level_positions, new_level_positions)
        self._live_bitmap = None

    # ---------------------------------------------------------------- queries

    @property
    def _topics(self) -> list[tuple[str, ...]]:
        """Each position's topics (unpacked from the saved arrays on first use)."""
        if self._topic_tuples is None:
            offsets, flat = self._packed_topics or (np.zeros(1, np.int64), np.zeros(0, np.str_))
            bounds = offsets.tolist()
            names = flat.tolist()
            self._topic_tuples = [
                tuple(names[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)
            ]
            self._packed_topics = None
        return self._topic_tuples

    def __len__(self) -> int:
        """Number of distinct live content ids."""
        return len(self._position_of)

    @property
    def n_deleted(self) -> int:
        """Graph nodes kept only as tombstones; a rebuild reclaims them."""
        return self._size - len(self._position_of)

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Up to ``k`` hits, best first by inner product, all passing ``item_filter``."""
        if k <= 0:
            raise ValueError("k must be positive")
        if not self._position_of:
            return []
        q = _unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1), self.dim, "query")
        active = item_filter if item_filter is not None and not item_filter.is_empty else None
        mask: np.ndarray | None
        if active is None:
            mask = None if self.n_deleted == 0 else self._live[: self._size]
            allowed = len(self._position_of)
        else:
            mask = self._allowed_mask(active)
            allowed = int(np.count_nonzero(mask))
            if allowed == 0:
                return []
        k = min(k, allowed)
        # The filtered walk also visits disallowed nodes, so it needs a candidate list
        # about 1/fraction times longer to keep its recall; past max_filtered_ef the walk
        # costs more than exactly scoring the (then few) allowed items.
        base_ef = max(self.ef_search, k)
        ef = max(base_ef, math.ceil(base_ef * self._size / allowed))
        if allowed <= max(k * self.exact_k_factor, self.exact_threshold) or ef > max(
            self.max_filtered_ef, base_ef
        ):
            return self._exact(q, k, mask, allowed)
        hits = self._hnsw(q, k, ef, mask, cache_bitmap=active is None)
        if len(hits) < k:
            # The filtered graph walk ran dry before finding k allowed items.
            return self._exact(q, k, mask, allowed)
        return hits

    def _allowed_mask(self, item_filter: ItemFilter) -> np.ndarray:
        """Boolean [size] mask of live positions passing the filter.

        Work is proportional to the filter's own size (topics, ids) plus a few vectorised
        passes over the arrays; no Python loop over items.
        """
        size = self._size
        mask = self._live[:size].copy()
        if item_filter.include_topics:
            mask &= _any_of(self._topic_positions, item_filter.include_topics, size)
        if item_filter.exclude_topics:
            mask &= ~_any_of(self._topic_positions, item_filter.exclude_topics, size)
        if item_filter.levels:
            mask &= _any_of(self._level_positions, item_filter.levels, size)
        if item_filter.exclude_ids:
            excluded = [
                position
                for content_id in item_filter.exclude_ids
                if (position := self._position_of.get(content_id)) is not None
            ]
            if excluded:
                mask[np.asarray(excluded, dtype=np.int64)] = False
        return mask

    def _exact(
        self, q: np.ndarray, k: int, mask: np.ndarray | None, allowed: int
    ) -> list[SearchHit]:
        """Exact top-k over the allowed positions (gather when few, masked full pass when many).

        Dot products go through ``einsum`` rather than ``@``: a single query's matvec is
        memory-bound, and ``@`` hands it to OpenBLAS, whose worker threads add wake-up
        and spin time (measured up to ~10x slower on a busy 2-core host) for no gain.
        """
        size = self._size
        candidates: np.ndarray | None
        if mask is not None and allowed * 8 <= size:
            candidates = np.flatnonzero(mask)
            scores = np.einsum("ij,j->i", self._vectors[candidates], q[0])
        else:
            candidates = None
            scores = np.einsum("ij,j->i", self._vectors[:size], q[0])
            if mask is not None:
                np.copyto(scores, np.float32(-np.inf), where=~mask)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        positions = top if candidates is None else candidates[top]
        return self._hits(positions, scores[top])

    def _hnsw(
        self, q: np.ndarray, k: int, ef: int, mask: np.ndarray | None, *, cache_bitmap: bool
    ) -> list[SearchHit]:
        """Graph search; with a mask only allowed positions may become hits."""
        try:
            params = _faiss.SearchParametersHNSW()
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
                selector = _faiss.IDSelectorBitmap(bitmap)
                params.sel = selector
            distances, labels = self._index.search(q, k, params=params)
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss search failed: {exc}") from exc
        found = labels[0] >= 0
        return self._hits(labels[0][found], distances[0][found])

    def _hits(self, positions: np.ndarray, scores: np.ndarray) -> list[SearchHit]:
        ids = self._ids
        return [
            SearchHit(ids[position], score)
            for position, score in zip(positions.tolist(), scores.tolist(), strict=True)
        ]

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
            _faiss.write_index(self._index, str(directory / _INDEX_FILE))
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
            topics=np.asarray(_flatten(self._topics), dtype=np.str_),
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
        try:
            with np.load(directory / _META_FILE, allow_pickle=False) as meta:
                arrays = {name: meta[name] for name in meta.files}
        except (OSError, ValueError, KeyError) as exc:
            raise VectorIndexError(f"cannot read index metadata in {directory}: {exc}") from exc
        if int(arrays["format_version"]) != _FORMAT_VERSION:
            raise VectorIndexError(f"unsupported index format {int(arrays['format_version'])}")
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
        try:
            graph = _faiss.read_index(str(directory / _INDEX_FILE))
        except RuntimeError as exc:
            raise VectorIndexError(f"faiss could not read {directory}: {exc}") from exc
        ids: list[str] = arrays["content_ids"].tolist()
        size = len(ids)
        if not isinstance(graph, faiss.IndexHNSWFlat) or graph.ntotal != size or graph.d != dim:
            raise VectorIndexError(f"index file and metadata in {directory} do not match")
        graph.hnsw.efSearch = index.ef_search
        index._index = graph
        index._init_metadata(capacity=size)
        index._size = size
        if size:
            index._vectors[:] = graph.reconstruct_n(0, size)
        index._levels[:] = arrays["levels"]
        index._has_level[:] = arrays["has_level"]
        index._live[:] = arrays["live"]
        index._ids = ids
        offsets, flat = arrays["topic_offsets"], arrays["topics"]
        index._topic_tuples, index._packed_topics = None, (offsets, flat)
        index._topic_positions = _postings(offsets, flat)
        leveled = np.flatnonzero(index._has_level)
        for level in np.unique(index._levels[leveled]).tolist():
            index._level_positions[level] = leveled[index._levels[leveled] == level]
        if index._live.all():
            index._position_of = dict(zip(ids, range(size), strict=True))
        else:
            live_positions = np.flatnonzero(index._live).tolist()
            index._position_of = {ids[position]: position for position in live_positions}
        return index


def _extend_postings(postings: dict[_K, np.ndarray], new: dict[_K, list[int]]) -> None:
    """Append positions to each value's posting array (one concatenate per value)."""
    for value, positions in new.items():
        added = np.asarray(positions, dtype=np.int64)
        previous = postings.get(value)
        postings[value] = added if previous is None else np.concatenate([previous, added])


def _postings(offsets: np.ndarray, flat: np.ndarray) -> dict[str, np.ndarray]:
    """Topic -> ascending positions, from per-position topic ranges of a flat array.

    Vectorised: a 100k-item index loads in milliseconds instead of a Python loop's ~0.1 s.
    """
    if len(flat) == 0:
        return {}
    owners = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    names, codes = np.unique(flat, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1)).tolist()
    return {
        str(name): owners[order[bounds[i] : bounds[i + 1]]] for i, name in enumerate(names.tolist())
    }


def _any_of(
    positions_by_key: Mapping[Any, np.ndarray], keys: Iterable[Any], size: int
) -> np.ndarray:
    """Boolean [size] mask of the positions listed under any of ``keys``."""
    hit = np.zeros(size, dtype=bool)
    for key in keys:
        positions = positions_by_key.get(key)
        if positions is not None:
            hit[positions] = True
    return hit


def _flatten(groups: Iterable[tuple[str, ...]]) -> list[str]:
    return [member for group in groups for member in group]
