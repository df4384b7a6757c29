"""Read-only queries over many learners at once, for batch jobs.

:meth:`CatalogStore.learner_context` costs three round trips per learner: fine for one
request, an hour for 100 000 learners. These helpers answer the same question for a
chunk of learners in three queries, and must answer it *identically* (same profile,
same tombstone rule, same history order and limit), because batch recommendations
promise the lists the API would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import Engine, func, select, union

from .catalog import (
    CHUNK_SIZE,
    HISTORY,
    LEARNERS,
    TOMBSTONES,
    HistoryEntry,
    LearnerContext,
    history_entry,
    learner_context_of,
)


def learner_contexts(
    engine: Engine, user_ids: Sequence[str], history_limit: int = 200
) -> dict[str, LearnerContext]:
    """:meth:`CatalogStore.learner_context` for each of ``user_ids`` (hashed), in bulk.

    Three queries per :data:`CHUNK_SIZE` learners over one connection. The history keeps
    each learner's ``history_limit`` latest rows, ordered as the single-learner query
    orders them (newest first, ties by content id), through a window function, which
    SQLite and PostgreSQL both have.
    """
    found: dict[str, LearnerContext] = {}
    unique = list(dict.fromkeys(user_ids))
    with engine.connect() as conn:
        for start in range(0, len(unique), CHUNK_SIZE):
            chunk = unique[start : start + CHUNK_SIZE]
            profiles = {
                str(row["user_id"]): row
                for row in conn.execute(select(LEARNERS).where(LEARNERS.c.user_id.in_(chunk)))
                .mappings()
                .all()
            }
            reasons = {
                str(user_id): str(reason)
                for user_id, reason in conn.execute(
                    select(TOMBSTONES.c.user_id, TOMBSTONES.c.reason).where(
                        TOMBSTONES.c.user_id.in_(chunk)
                    )
                )
            }
            position = (
                func.row_number()
                .over(
                    partition_by=HISTORY.c.user_id,
                    order_by=(HISTORY.c.ts.desc(), HISTORY.c.content_id),
                )
                .label("position")
            )
            ranked = select(HISTORY, position).where(HISTORY.c.user_id.in_(chunk)).subquery()
            history_stmt = (
                select(ranked)
                .where(ranked.c.position <= history_limit)
                .order_by(ranked.c.user_id, ranked.c.position)
            )
            histories: dict[str, list[HistoryEntry]] = {}
            for row in conn.execute(history_stmt).mappings():
                histories.setdefault(str(row["user_id"]), []).append(history_entry(row))
            for user_id in chunk:
                found[user_id] = learner_context_of(
                    profiles.get(user_id), reasons.get(user_id), histories.get(user_id, [])
                )
    return found


def known_learners(engine: Engine, page: int = 10_000) -> Iterator[str]:
    """Every hashed id with a profile or history, in id order, a page at a time.

    Keyset pagination (``id > last``) keeps each page's query as cheap as the first,
    and the order makes two runs over the same database write the same parts.
    """
    ids = union(select(LEARNERS.c.user_id), select(HISTORY.c.user_id)).subquery()
    last: str | None = None
    while True:
        stmt = select(ids.c.user_id).order_by(ids.c.user_id).limit(page)
        if last is not None:
            stmt = stmt.where(ids.c.user_id > last)
        # A connection per page: none stays open (holding a snapshot, or a proxy's
        # connection) while the caller works through the page.
        with engine.connect() as conn:
            rows = [str(user_id) for user_id in conn.scalars(stmt)]
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1]


def chunked(values: Iterable[str], size: int) -> Iterator[list[str]]:
    """``values`` in lists of ``size``; the batch job's unit of reading and writing."""
    chunk: list[str] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
