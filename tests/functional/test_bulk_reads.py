"""The batch job's bulk reads answer exactly what the per-request read answers.

On SQLite and on PostgreSQL (the window function and the byte-wise id order must agree
on both), with every case the recommend route distinguishes: a profile alone, history
alone and longer than the limit with tied timestamps, an opt-out, the previous
release's opt-out flag alone, an erasure, and a learner the database does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from functional.test_storage_postgres import pg_engine  # noqa: F401 - a fixture
from learnrec.schemas import Learner
from learnrec.storage import Base, CatalogStore, PrivacyStore, make_engine
from learnrec.storage.bulk import known_learners, learner_contexts
from learnrec.storage.catalog import LEARNERS
from learnrec.storage.migrate import upgrade

LIMIT = 6


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogStore]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
        upgrade(engine)
        yield CatalogStore(engine)
        engine.dispose()
        return
    shared: Engine = request.getfixturevalue("pg_engine")
    with shared.begin() as conn:
        names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names}"))
    yield CatalogStore(shared)


def test_bulk_contexts_and_listing_equal_the_single_reads(store: CatalogStore) -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    store.upsert_learners(
        [
            Learner(user_id="a-profile", level=2, interests=["python"], goals=["job"]),
            Learner(user_id="b-both", level=None, interests=[], goals=[]),
            Learner(user_id="c-legacy-flag", level=1, interests=["sql"], goals=[]),
        ]
    )
    rows = [
        # Ties on ts: the order falls back to the content id, on both backends.
        ("b-both", f"item-{n:02d}", "view", now - timedelta(hours=n // 2), float(n % 3))
        for n in range(LIMIT * 2)
    ]
    rows += [("d-history", "Zed", "complete", now, 4.0), ("d-history", "alpha", "view", now, 1.0)]
    rows += [("e-opted", "item-01", "start", now, 2.0), ("f-erased", "item-02", "view", now, 1.0)]
    store.record_history(rows)
    store.set_opt_out("e-opted", True)
    with store.engine.begin() as conn:  # what the previous release wrote: the flag alone
        conn.execute(
            update(LEARNERS).where(LEARNERS.c.user_id == "c-legacy-flag").values(opted_out=True)
        )
    PrivacyStore(store.engine).erase_learner("f-erased")
    keys = ["a-profile", "b-both", "c-legacy-flag", "d-history", "e-opted", "f-erased", "nobody"]
    bulk = learner_contexts(store.engine, [*keys, "b-both"], history_limit=LIMIT)
    assert set(bulk) == set(keys)
    for key in keys:
        assert bulk[key] == store.learner_context(key, history_limit=LIMIT), key
    assert len(bulk["b-both"].history) == LIMIT and bulk["c-legacy-flag"].opted_out
    assert bulk["e-opted"].opted_out and bulk["f-erased"].erased
    listed = list(known_learners(store.engine, page=2))
    assert listed == sorted(["a-profile", "b-both", "c-legacy-flag", "d-history", "e-opted"])
