"""The ingest ledger and history upserts on a real PostgreSQL (same contract as SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from functional.test_storage_postgres import pg_engine  # noqa: F401 (the fixture)
from learnrec.storage import Base, CatalogStore, IngestStore, PrivacyStore

pytestmark = pytest.mark.postgres
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def stores(pg_engine: Engine) -> tuple[IngestStore, CatalogStore]:  # noqa: F811
    with pg_engine.begin() as conn:
        names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names}"))
    return IngestStore(pg_engine), CatalogStore(pg_engine)


def test_ledger_keeps_the_first_batch_and_history_merges(
    stores: tuple[IngestStore, CatalogStore],
) -> None:
    ingest, catalog = stores
    catalog.set_opt_out("private", True)
    rows = [("u1", "c1", "view", T0, 1.0), ("u1", "c1", "complete", T0 - timedelta(hours=1), 4.0)]
    written = ingest.commit(
        "batch-a",
        [("u1", "e1"), ("u1", "e2"), ("u1", "e2")],
        [*rows, ("private", "c9", "view", T0, 1.0)],
        T0,
    )
    assert written == 1  # one (learner, item) row; the opted-out learner's row is dropped
    ingest.commit("batch-b", [("u1", "e2"), ("u1", "e3")], rows, T0)  # a replay changes nothing
    # Per learner: another learner's event with the same id is not a duplicate.
    ingest.commit("batch-c", [("u2", "e1")], [], T0)
    keys = [("u1", "e1"), ("u1", "e2"), ("u1", "e3"), ("u1", "e4"), ("u2", "e1"), ("u2", "e2")]
    seen, opted_out = ingest.lookup(keys, ["u1", "private"])
    assert seen == {
        ("u1", "e1"): "batch-a",
        ("u1", "e2"): "batch-a",
        ("u1", "e3"): "batch-b",
        ("u2", "e1"): "batch-c",
    }
    assert opted_out == {"private"}
    (entry,) = catalog.history("u1")
    assert (entry.event_type.value, entry.ts, entry.weight) == ("view", T0, 4.0)
    assert catalog.history("private") == []
    assert PrivacyStore(catalog.engine).erase_learner("u2") is True  # their ledger row too
    assert ingest.lookup([("u2", "e1")], ["u2"]) == ({}, {"u2"})
    assert ingest.prune(T0 + timedelta(seconds=1)) == 3
    assert ingest.lookup([("u1", "e1")], [])[0] == {}
