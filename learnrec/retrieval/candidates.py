"""Exact top-k retrieval: over a dense item matrix, and as a filtered vector index.

Offline evaluation and ranker training score every learner against every item
(:func:`top_k`); serving searches one learner at a time through filters
(:class:`ExactIndex`). Both are the exact answer the approximate indexes (faiss HNSW,
OpenSearch k-NN) approximate, computed with numpy alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from learnrec.retrieval.index import IndexedItem, ItemFilter, SearchHit

_K = TypeVar("_K", str, int)


def top_k(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    exclude: Sequence[np.ndarray],
    k: int,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Best k item rows per learner by inner product, best first.

    ``user_vectors`` [U, D], ``item_vectors`` [N+1, D] whose row 0 (the unknown item)
    is never returned; ``exclude[u]`` item rows to skip for learner u. Returns indices
    and scores [U, k'] with k' = min(k, N); slots a learner cannot fill (everything
    excluded) hold index 0 and score -inf.
    """
    n_items = item_vectors.shape[0] - 1
    width = max(0, min(k, n_items))
    indices = np.zeros((len(user_vectors), width), dtype=np.int64)
    scores = np.full((len(user_vectors), width), -np.inf, dtype=np.float32)
    if width == 0:
        return indices, scores
    for start in range(0, len(user_vectors), chunk):
        block = user_vectors[start : start + chunk] @ item_vectors.T
        block[:, 0] = -np.inf
        for row, seen in enumerate(exclude[start : start + chunk]):
            if len(seen):
                block[row, seen] = -np.inf
        part = np.argpartition(-block, width - 1, axis=1)[:, :width]
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        top[~np.isfinite(top_scores)] = 0
        indices[start : start + chunk] = top
        scores[start : start + chunk] = top_scores
    return indices, scores


class ExactIndex:
    """Exact maximum-inner-product search over unit item vectors, with the indexes' filters.

    Implements :class:`learnrec.retrieval.index.VectorIndex` with numpy alone, so serving
    can answer from the bundle's item vectors when its index cannot (OpenSearch down,
    faiss failing), applying the same filters, and so a function without faiss in its
    package can still search. :class:`learnrec.retrieval.faiss_index.FaissIndex` extends
    it with an HNSW graph; positions here are its faiss labels.

    Filters become a mask of allowed positions first (vectorised numpy over per-item
    metadata and inverted topic/level postings, never a per-request loop over items).
    Replacing an item marks its old position deleted and appends the new vector, so
    positions are append-only.
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._init_metadata(capacity=0)

    @classmethod
    def build(cls, items: Sequence[IndexedItem], *, dim: int | None = None) -> ExactIndex:
        """An index holding ``items`` (the dimension comes from them, or ``dim`` if empty)."""
        index = cls(infer_dim(items, dim))
        index.upsert(items)
        return index

    @classmethod
    def from_arrays(
        cls,
        content_ids: list[str],
        vectors: np.ndarray,
        topic_offsets: np.ndarray,
        topics: np.ndarray,
        levels: np.ndarray,
        has_level: np.ndarray,
        live: np.ndarray,
    ) -> ExactIndex:
        """An index from per-position arrays (a saved index's metadata), without a loop.

        ``topics[topic_offsets[i]:topic_offsets[i + 1]]`` are position i's topics; rows
        of ``vectors`` are normalised here.
        """
        index = cls(int(vectors.shape[1]))
        rows = _unit_rows(vectors, index.dim, "vectors") if len(vectors) else vectors
        index._restore(content_ids, rows, topic_offsets, topics, levels, has_level, live)
        return index

    # ---------------------------------------------------------------- construction

    def _init_metadata(self, capacity: int) -> None:
        """Per-position arrays, grown geometrically so upserts stay amortised O(batch)."""
        self._size = 0  # positions used (live + deleted)
        self._vectors = np.empty((capacity, self.dim), dtype=np.float32)
        self._levels = np.zeros(capacity, dtype=np.int64)
        self._has_level = np.zeros(capacity, dtype=bool)
        self._live = np.zeros(capacity, dtype=bool)
        self._ids: list[str] = []
        # Per-position topic tuples, only needed to save or to grow the index; a restored
        # index keeps the (offsets, flat topics) arrays until then.
        self._topic_tuples: list[tuple[str, ...]] | None = []
        self._packed_topics: tuple[np.ndarray, np.ndarray] | None = None
        self._position_of: dict[str, int] = {}
        # Inverted indexes (postings): value -> positions holding it, possibly deleted ones.
        self._topic_positions: dict[str, np.ndarray] = {}
        self._level_positions: dict[int, np.ndarray] = {}

    def _restore(
        self,
        content_ids: list[str],
        vectors: np.ndarray,
        topic_offsets: np.ndarray,
        topics: np.ndarray,
        levels: np.ndarray,
        has_level: np.ndarray,
        live: np.ndarray,
    ) -> None:
        """Replace the contents with per-position arrays (``vectors`` already unit rows),
        which the index then owns."""
        size = len(content_ids)
        if not (
            len(vectors) == len(levels) == len(has_level) == len(live) == size
            and len(topic_offsets) == size + 1
        ):
            raise ValueError("per-position arrays of different lengths")
        self._init_metadata(capacity=0)
        # Adopted, not copied (a 100k-item index is ~25 MB of vectors): the first
        # upsert grows them into new arrays anyway.
        self._size = size
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._levels = np.asarray(levels, dtype=np.int64)
        self._has_level = np.asarray(has_level, dtype=bool)
        self._live = np.asarray(live, dtype=bool)
        self._ids = content_ids
        self._topic_tuples, self._packed_topics = None, (topic_offsets, topics)
        self._topic_positions = _postings(topic_offsets, topics)
        leveled = np.flatnonzero(self._has_level)
        for level in np.unique(self._levels[leveled]).tolist():
            self._level_positions[level] = leveled[self._levels[leveled] == level]
        if self._live.all():
            self._position_of = dict(zip(content_ids, range(size), strict=True))
        else:
            live_positions = np.flatnonzero(self._live).tolist()
            self._position_of = {content_ids[position]: position for position in live_positions}

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
        """Append ``items``; an id already indexed has its old position marked deleted."""
        if items:
            self._append(self._unit_vectors(items), items)

    def _unit_vectors(self, items: Sequence[IndexedItem]) -> np.ndarray:
        return _unit_rows(
            np.stack([np.asarray(item.vector, dtype=np.float32).ravel() for item in items]),
            self.dim,
            "upsert",
        )

    def _append(self, vectors: np.ndarray, items: Sequence[IndexedItem]) -> None:
        """Record ``items`` (with their unit ``vectors``) at the next positions."""
        start = self._size
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

    # ---------------------------------------------------------------- queries

    @property
    def _topics(self) -> list[tuple[str, ...]]:
        """Each position's topics (unpacked from the restored arrays on first use)."""
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
        """Positions kept only as tombstones."""
        return self._size - len(self._position_of)

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Up to ``k`` hits, best first by inner product, all passing ``item_filter``."""
        prepared = self._prepare(query, k, item_filter)
        if prepared is None:
            return []
        q, k, mask, allowed = prepared
        return self._exact(q, k, mask, allowed)

    def _prepare(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None
    ) -> tuple[np.ndarray, int, np.ndarray | None, int] | None:
        """The unit query, ``k`` capped at what is allowed, the allowed mask (None: every
        live position, no deletions) and its count; None when nothing can be returned."""
        if k <= 0:
            raise ValueError("k must be positive")
        if not self._position_of:
            return None
        q = _unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1), self.dim, "query")
        mask: np.ndarray | None
        if item_filter is None or item_filter.is_empty:
            mask = None if self.n_deleted == 0 else self._live[: self._size]
            allowed = len(self._position_of)
        else:
            mask = self._allowed_mask(item_filter)
            allowed = int(np.count_nonzero(mask))
            if allowed == 0:
                return None
        return q, min(k, allowed), mask, allowed

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

    def _hits(self, positions: np.ndarray, scores: np.ndarray) -> list[SearchHit]:
        ids = self._ids
        return [
            SearchHit(ids[position], score)
            for position, score in zip(positions.tolist(), scores.tolist(), strict=True)
        ]


def infer_dim(items: Sequence[IndexedItem], dim: int | None) -> int:
    if dim is not None:
        return dim
    if not items:
        raise ValueError("cannot infer the dimension of an empty index; pass dim")
    return int(np.asarray(items[0].vector).shape[-1])


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


def flatten_topics(groups: Iterable[tuple[str, ...]]) -> list[str]:
    return [member for group in groups for member in group]
