"""The vector-index interface that serving retrieves candidates through.

Two real backends implement it: faiss (embedded, the default; learnrec.retrieval.faiss_index)
and OpenSearch k-NN (learnrec.retrieval.opensearch_index). Both take the same filter, so
business rules (topics, levels, excluded items) are pushed into the search itself rather
than applied afterwards to a list that may then run short.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ItemFilter:
    """Which items a search may return. Empty sets mean "no constraint".

    ``include_topics``: the item must have at least one of these topics;
    ``exclude_topics``: it must have none of them; ``levels``: its level must be one of
    these (items without a level pass only when ``levels`` is empty);
    ``exclude_ids``: content ids never to return (already consumed, explicitly excluded).
    """

    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    include_topics: frozenset[str] = field(default_factory=frozenset)
    exclude_topics: frozenset[str] = field(default_factory=frozenset)
    levels: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_empty(self) -> bool:
        return not (self.exclude_ids or self.include_topics or self.exclude_topics or self.levels)

    def allows(self, content_id: str, topics: Iterable[str], level: int | None) -> bool:
        """Whether one item passes; the indexes apply the same rules in bulk."""
        if content_id in self.exclude_ids:
            return False
        topic_set = set(topics)
        if self.include_topics and not topic_set & self.include_topics:
            return False
        if topic_set & self.exclude_topics:
            return False
        return not (self.levels and level not in self.levels)


@dataclass(frozen=True)
class IndexedItem:
    """What an index stores per item: its vector and the fields filters look at."""

    content_id: str
    vector: np.ndarray
    topics: Sequence[str] = ()
    level: int | None = None


@dataclass(frozen=True)
class SearchHit:
    content_id: str
    score: float  # inner product of the unit vectors (a cosine), whatever the backend


class VectorIndexError(RuntimeError):
    """The index could not answer; serving falls back (popularity) and says so."""


class VectorIndex(Protocol):
    """Approximate maximum-inner-product search over unit item vectors."""

    def search(
        self, query: np.ndarray, k: int, item_filter: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Up to ``k`` hits, best first, all passing ``item_filter``."""
        ...

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        """Add items, or replace those whose content id is already indexed."""
        ...

    def __len__(self) -> int: ...
