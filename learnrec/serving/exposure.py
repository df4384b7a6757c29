"""Exposure for new items: a reserved share of each list for items no learner has engaged with.

A model learns an item's place from engagement. An item added after training (``PUT
/admin/catalog``), or in the catalog but never engaged with in the training data, has
none: the ranker's popularity and co-engagement features put it below items learners
already know, so it is not shown, gets no engagement, and the next retraining learns
nothing about it either. Reserving a few slots for such items, only where they fit the
learner (a topic of their interests or history, a level near theirs), breaks that loop
at a small, measured cost (README, "New items").

The rules live here, apart from the request path, so that serving and the offline
benchmark apply the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import numpy as np

from learnrec.features.csr import CsrMatrix

DEFAULT_NEW_ITEM_SLOTS = 1
# How far from the learner's level a new item may be (levels are 1..5).
LEVEL_TOLERANCE = 1.0
# History items whose levels estimate a learner's level when the profile has none.
RECENT_LEVELS = 10
TOPIC_PREFIX = "topic:"  # how item stats name topic tokens (features.space.item_tokens)


def learner_topics(interests: Iterable[str], history_topics: Iterable[Iterable[str]]) -> set[str]:
    """The topics a learner showed interest in: declared, or in items they engaged with."""
    topics = set(interests)
    for item_topics in history_topics:
        topics.update(item_topics)
    return topics


def learner_level(declared: int | None, history_levels: Sequence[int | None]) -> float | None:
    """The declared level, else the mean level of recent history (most recent last)."""
    if declared is not None:
        return float(declared)
    known = [level for level in history_levels[-RECENT_LEVELS:] if level is not None]
    return sum(known) / len(known) if known else None


def matching_topic(item_topics: Sequence[str], topics: Collection[str]) -> str | None:
    """The first of the item's topics the learner has, or None when it has none of them."""
    return next((t for t in item_topics if t in topics), None)


def level_fits(item_level: int | None, level: float | None) -> bool:
    """Whether an item's level is near the learner's; unknown on either side fits."""
    return item_level is None or level is None or abs(item_level - level) <= LEVEL_TOLERANCE


def reason(topic: str) -> str:
    return f"New in {topic}"


def make_room(
    ranked: Sequence[str], is_new: Callable[[str], bool], picks: int, k: int
) -> list[int]:
    """Positions in ``ranked`` to keep so that ``picks`` new items fit within ``k``.

    The lowest-ranked items that are not new themselves give way: a new item that earned
    its place through the model keeps it.
    """
    drop = max(len(ranked) + picks - k, 0)
    kept = list(range(len(ranked)))
    for position in reversed(range(len(ranked))):
        if drop == 0:
            break
        if not is_new(ranked[position]):
            kept.remove(position)
            drop -= 1
    return kept


class NewItemPool:
    """The items a model has no engagement for, found by topic without reading the catalog.

    The bundle's untrained items come from one vectorised pass over its popularity counts
    and topic tokens (at 100k items most of the catalog can be untrained, and parsing it
    would cost a cold start seconds); items added later come with their item-tower
    vectors. A request scores at most ``limit`` of them: the most recently added first,
    then the bundle's in catalog order, only those near the learner's level.
    """

    def __init__(
        self,
        popularity: np.ndarray,
        levels: np.ndarray,
        tokens: CsrMatrix,
        token_keys: Sequence[str],
        keys: Sequence[str],
        index: Callable[[str], int],
        vectors: np.ndarray,
    ) -> None:
        self._popularity = popularity
        self._levels = levels
        self._keys = keys
        self._index = index
        self._vectors = vectors
        self._by_topic: dict[str, np.ndarray] = {}
        self._added: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        rows = np.flatnonzero(popularity[1:] <= 0) + 1
        if not len(rows):
            return
        owner, columns, _ = tokens.gather(rows)
        order = np.argsort(columns, kind="stable")
        columns, owner = columns[order], owner[order]
        bounds = np.flatnonzero(np.diff(columns)) + 1
        for run_columns, run_owner in zip(
            np.split(columns, bounds), np.split(owner, bounds), strict=True
        ):
            key = token_keys[int(run_columns[0])]
            if key.startswith(TOPIC_PREFIX):
                self._by_topic[key[len(TOPIC_PREFIX) :]] = rows[np.sort(run_owner)]

    def __bool__(self) -> bool:
        return bool(self._by_topic or self._added)

    def is_new(self, content_id: str) -> bool:
        if content_id in self._added:
            return True
        row = self._index(content_id)
        return row == 0 or not self._popularity[row] > 0

    def add(self, content_id: str, vector: np.ndarray, topics: Sequence[str]) -> None:
        """Remember an item added or changed since training (most recent last)."""
        self._added.pop(content_id, None)
        self._added[content_id] = (np.asarray(vector, dtype=np.float32), tuple(topics))

    def candidates(
        self, topics: Collection[str], level: float | None, limit: int
    ) -> tuple[list[str], np.ndarray]:
        """(ids, vectors [N, D]) of new items in ``topics`` near ``level``, N <= limit."""
        ids: list[str] = []
        vectors: list[np.ndarray] = []
        for content_id, (vector, item_topics) in reversed(self._added.items()):
            if len(ids) >= limit:
                break
            if any(t in topics for t in item_topics):
                ids.append(content_id)
                vectors.append(vector)
        room = limit - len(ids)
        parts: list[np.ndarray] = []
        for topic in sorted(topics):
            if room <= 0:
                break
            rows = self._by_topic.get(topic)
            if rows is None:
                continue
            if level is not None:
                item_levels = self._levels[rows]
                near = np.isnan(item_levels) | (np.abs(item_levels - level) <= LEVEL_TOLERANCE)
                rows = rows[near]
            parts.append(rows[:room])
            room -= len(parts[-1])
        if parts:
            rows = np.unique(np.concatenate(parts))
            keep = [r for r in rows.tolist() if self._keys[r - 1] not in self._added]
            ids.extend(self._keys[r - 1] for r in keep)
            if keep:
                vectors.append(np.asarray(self._vectors[keep], dtype=np.float32))
        if not ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, np.vstack([np.atleast_2d(v) for v in vectors])
