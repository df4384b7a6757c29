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

DEFAULT_NEW_ITEM_SLOTS = 1
# How far from the learner's level a new item may be (levels are 1..5).
LEVEL_TOLERANCE = 1.0
# History items whose levels estimate a learner's level when the profile has none.
RECENT_LEVELS = 10


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
