"""CatalogStore on SQLite, plus the behaviour contract that every backend must meet.

`StorageContract` holds the backend-independent tests; a backend's test class inherits it
and supplies a `store` fixture (see tests/functional/test_storage_postgres.py), so SQLite
and PostgreSQL are held to exactly the same assertions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from learnrec.schemas import ContentFormat, ContentItem, EventType, Learner
from learnrec.storage import (
    CHUNK_SIZE,
    DEFAULT_DATABASE_URL,
    CatalogStore,
    HistoryEntry,
    HistoryRow,
    IngestStore,
    LearnerContext,
    PrivacyStore,
    TombstoneReason,
    make_engine,
)
from learnrec.storage.migrate import upgrade
from learnrec.storage.schema import HEAD

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _item(content_id: str, **fields: object) -> ContentItem:
    return ContentItem.model_validate({"content_id": content_id, **fields})


FULL_ITEM = ContentItem(
    content_id="py-101",
    title="Python basics — ünïcode too",
    topics=["python", "programming"],
    tags=["beginner", "concept:variables", "concept:loops"],
    level=2,
    format=ContentFormat.COURSE,
    duration_minutes=95.5,
    prerequisites=["intro-cs", "math-1"],
)
FULL_LEARNER = Learner(user_id="u-1", level=3, interests=["python", "ml"], goals=["job", "cert"])


class StorageContract:
    """What any CatalogStore backend must do; subclasses provide the `store` fixture."""

    def test_learner_context_matches_the_separate_reads(self, store: CatalogStore) -> None:
        assert store.learner_context("nobody") == LearnerContext(None, None, [])
        store.upsert_learners([Learner(user_id="u1", level=2, interests=["python"])])
        store.record_history(
            [
                ("u1", "c1", "view", datetime(2026, 1, 1, tzinfo=UTC), 1.0),
                ("u1", "c2", "complete", datetime(2026, 1, 2, tzinfo=UTC), 4.0),
            ]
        )
        store.set_opt_out("u1", True)
        context = store.learner_context("u1")
        assert context.profile == store.get_learner("u1") and context.opted_out
        assert context.history == store.history("u1") and len(context.history) == 2
        assert not context.erased

    def test_upsert_inserts_then_updates(self, store: CatalogStore) -> None:
        assert store.upsert_items([_item("a", title="A"), _item("b", title="B")]) == 2
        assert store.count_items() == 2

        changed = _item("a", title="A v2", topics=["x"], level=5, format="video")
        assert store.upsert_items([changed, _item("c")]) == 2

        assert store.count_items() == 3
        assert store.get_item("a") == changed
        assert store.get_item("b") == _item("b", title="B")

    def test_upsert_replaces_optional_fields_with_none(self, store: CatalogStore) -> None:
        store.upsert_items([FULL_ITEM])
        bare = _item(FULL_ITEM.content_id)

        store.upsert_items([bare])

        assert store.get_item(FULL_ITEM.content_id) == bare

    def test_round_trip_equality(self, store: CatalogStore) -> None:
        minimal = _item("zz-minimal")
        store.upsert_items([FULL_ITEM, minimal])
        store.upsert_learners([FULL_LEARNER, Learner(user_id="u-2")])

        got = store.get_item(FULL_ITEM.content_id)
        assert got == FULL_ITEM
        assert got is not None and got.format is ContentFormat.COURSE
        assert store.get_item("zz-minimal") == minimal
        assert store.list_items() == [FULL_ITEM, minimal]
        assert store.get_learner("u-1") == FULL_LEARNER
        assert store.get_learner("u-2") == Learner(user_id="u-2")
        assert store.list_learners() == [FULL_LEARNER, Learner(user_id="u-2")]

    def test_missing_rows(self, store: CatalogStore) -> None:
        assert store.get_item("nope") is None
        assert store.get_learner("nobody") is None
        assert store.delete_item("nope") is False
        assert PrivacyStore(store.engine).erase_learner("nobody") is False
        assert store.history("nobody") == []
        assert store.count_items() == 0

    def test_delete_item(self, store: CatalogStore) -> None:
        store.upsert_items([_item("a"), _item("b")])

        assert store.delete_item("a") is True

        assert store.get_item("a") is None
        assert store.delete_item("a") is False
        assert [i.content_id for i in store.list_items()] == ["b"]

    def test_duplicates_in_one_batch_last_wins(self, store: CatalogStore) -> None:
        written = store.upsert_items([_item("a", title="old"), _item("a", title="new")])
        store.upsert_learners([Learner(user_id="u", level=1), Learner(user_id="u", level=4)])

        assert written == 1
        assert store.get_item("a") == _item("a", title="new")
        assert store.get_learner("u") == Learner(user_id="u", level=4)

    def test_more_than_one_chunk(self, store: CatalogStore) -> None:
        n = 2 * CHUNK_SIZE + 7
        items = [_item(f"item-{i:05d}", topics=[f"t{i % 7}"]) for i in range(n)]

        assert store.upsert_items(iter(items)) == n

        assert store.count_items() == n
        assert store.list_items(limit=3, offset=CHUNK_SIZE) == items[CHUNK_SIZE : CHUNK_SIZE + 3]

    def test_list_ordering_and_pagination(self, store: CatalogStore) -> None:
        # Mixed case, digits and punctuation: ordering must be byte-wise on every backend,
        # not whatever the server's locale collation says.
        ids = ["b", "item-10", "Z", "item-2", "a", "A-1", "a_b", "ab", "0"]
        store.upsert_items(_item(i) for i in ids)
        store.upsert_learners(Learner(user_id=i) for i in ids)
        expected = sorted(ids)

        assert [i.content_id for i in store.list_items()] == expected
        pages = [store.list_items(limit=4, offset=o) for o in range(0, len(ids), 4)]
        assert [len(p) for p in pages] == [4, 4, 1]
        assert [i.content_id for page in pages for i in page] == expected
        assert store.list_items(limit=2, offset=len(ids)) == []
        assert [i.content_id for i in store.list_items(offset=7)] == expected[7:]
        assert [lr.user_id for lr in store.list_learners(limit=3, offset=2)] == expected[2:5]

    def test_erasure_removes_profile_and_history(self, store: CatalogStore) -> None:
        store.upsert_learners([FULL_LEARNER, Learner(user_id="u-2")])
        store.set_opt_out("u-1", True)
        store.record_history(
            [
                ("u-1", "a", EventType.CLICK, T0, 1.0),
                ("u-1", "b", EventType.COMPLETE, T0, 4.0),
                ("u-2", "a", EventType.VIEW, T0, 1.0),
            ]
        )

        ledger = IngestStore(store.engine)
        ledger.commit("b1", [("u-1", "e-1"), ("u-2", "e-1")], [], T0)
        privacy = PrivacyStore(store.engine)

        assert privacy.erase_learner("u-1") is True

        assert store.get_learner("u-1") is None
        assert store.history("u-1") == []
        assert ledger.lookup([("u-1", "e-1"), ("u-2", "e-1")], [])[0] == {("u-2", "e-1"): "b1"}
        # The tombstone outlives the data: the learner stays untracked, as erased.
        assert store.is_opted_out("u-1") is True
        assert store.tombstone("u-1") is TombstoneReason.ERASED
        assert store.learner_context("u-1") == LearnerContext(None, TombstoneReason.ERASED, [])
        store.record_history([("u-1", "c", EventType.VIEW, T0, 1.0)])
        assert store.history("u-1") == []
        store.set_opt_out("u-1", False)  # opting back in never undoes an erasure
        assert store.tombstone("u-1") is TombstoneReason.ERASED
        assert store.get_learner("u-2") == Learner(user_id="u-2")
        assert [e.content_id for e in store.history("u-2")] == ["a"]
        assert privacy.erase_learner("u-1") is False
        assert privacy.pending_erasures(datetime.now(UTC)) == ["u-1"]

    def test_erasure_of_history_without_profile(self, store: CatalogStore) -> None:
        store.record_history([("anon", "a", "click", T0, 1.0)])

        assert PrivacyStore(store.engine).erase_learner("anon") is True
        assert store.history("anon") == []

    def test_history_is_idempotent_and_keeps_latest(self, store: CatalogStore) -> None:
        rows: list[HistoryRow] = [
            ("u", "a", EventType.CLICK, T0, 1.0),
            ("u", "b", "view", T0 + timedelta(hours=1), 1.0),
            ("u", "a", EventType.START, T0 + timedelta(hours=2), 2.0),  # same key, newer
            ("v", "a", EventType.LIKE, T0, 3.0),
        ]

        first = store.record_history(rows)
        after_first = store.history("u")
        second = store.record_history(rows)

        assert first == second == 3
        assert store.history("u") == after_first
        assert after_first == [
            HistoryEntry("u", "a", EventType.START, T0 + timedelta(hours=2), 2.0),
            HistoryEntry("u", "b", EventType.VIEW, T0 + timedelta(hours=1), 1.0),
        ]

        # An older but stronger event raises the weight and leaves the latest ts alone...
        store.record_history([("u", "a", EventType.COMPLETE, T0, 4.0)])
        assert store.history("u")[0] == HistoryEntry(
            "u", "a", EventType.START, T0 + timedelta(hours=2), 4.0
        )
        # ...and a newer, weaker one moves ts and event type but keeps the max weight.
        store.record_history([("u", "a", EventType.IMPRESSION, T0 + timedelta(hours=3), 0.0)])
        assert store.history("u")[0] == HistoryEntry(
            "u", "a", EventType.IMPRESSION, T0 + timedelta(hours=3), 4.0
        )
        assert len(store.history("u")) == 2

    def test_history_order_limit_and_time_zones(self, store: CatalogStore) -> None:
        plus_two = timezone(timedelta(hours=2))
        store.record_history(
            ("u", f"item-{i}", EventType.VIEW, T0 + timedelta(minutes=i), 1.0) for i in range(5)
        )
        # 14:30+02:00 is 12:30 UTC: the newest, whatever offset it was written with.
        store.record_history(
            [("u", "late", EventType.VIEW, datetime(2026, 1, 15, 14, 30, tzinfo=plus_two), 1.0)]
        )

        entries = store.history("u", limit=3)

        assert [e.content_id for e in entries] == ["late", "item-4", "item-3"]
        assert entries[0].ts == T0 + timedelta(minutes=30)
        assert all(e.ts.utcoffset() == timedelta(0) for e in entries)

    def test_history_rejects_bad_rows(self, store: CatalogStore) -> None:
        with pytest.raises(ValueError, match="timezone"):
            store.record_history([("u", "a", EventType.VIEW, datetime(2026, 1, 1), 1.0)])
        with pytest.raises(ValueError, match="finite"):
            store.record_history([("u", "a", EventType.VIEW, T0, float("nan"))])
        with pytest.raises(ValueError):
            store.record_history([("u", "a", "teleport", T0, 1.0)])
        assert store.history("u") == []

    def test_opt_out(self, store: CatalogStore) -> None:
        store.upsert_learners([FULL_LEARNER])
        assert store.is_opted_out("u-1") is False
        assert store.is_opted_out("unknown") is False

        store.set_opt_out("u-1", True)
        assert store.is_opted_out("u-1") is True
        assert store.get_learner("u-1") == FULL_LEARNER

        # A profile update must not opt the learner back in.
        updated = Learner(user_id="u-1", level=4, interests=["data"])
        store.upsert_learners([updated])
        assert store.is_opted_out("u-1") is True
        assert store.get_learner("u-1") == updated

        store.set_opt_out("u-1", False)
        assert store.is_opted_out("u-1") is False

    def test_history_of_opted_out_learners_is_not_recorded(self, store: CatalogStore) -> None:
        store.set_opt_out("private", True)
        rows: list[HistoryRow] = [
            ("private", "c1", "view", T0, 1.0),
            ("open", "c1", "view", T0, 1.0),
        ]
        assert store.record_history(rows) == 1
        assert store.history("private") == [] and len(store.history("open")) == 1
        assert store.untracked_among(["private", "open", "unknown"]) == {"private"}

    def test_opt_out_without_profile(self, store: CatalogStore) -> None:
        store.set_opt_out("ghost", True)

        assert store.is_opted_out("ghost") is True
        assert store.get_learner("ghost") == Learner(user_id="ghost")
        store.upsert_learners([Learner(user_id="ghost", level=2)])
        assert store.is_opted_out("ghost") is True

    def test_upgrading_again_keeps_the_data(self, store: CatalogStore) -> None:
        store.upsert_items([FULL_ITEM])

        assert upgrade(store.engine) == HEAD

        assert store.get_item(FULL_ITEM.content_id) == FULL_ITEM


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[CatalogStore]:
        engine = make_engine(f"sqlite:///{tmp_path / 'learnrec.db'}")
        upgrade(engine)
        store = CatalogStore(engine)
        yield store
        engine.dispose()


# -- make_engine ------------------------------------------------------------------------


def test_make_engine_prefers_argument_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")

    assert make_engine(f"sqlite:///{tmp_path / 'arg.db'}").url.database == str(tmp_path / "arg.db")
    assert make_engine().url.database == str(tmp_path / "env.db")


def test_make_engine_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    engine = make_engine()  # no connection is made, so no file appears

    assert engine.url.render_as_string() == DEFAULT_DATABASE_URL


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db.example:5432/learnrec",
        "postgres://app@db.example:5432/learnrec",
        "postgresql+psycopg://app@db.example:5432/learnrec",
    ],
)
def test_make_engine_uses_psycopg3_for_postgres(url: str) -> None:
    engine = make_engine(url)  # lazily connects: no server needed

    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.dialect.driver == "psycopg"
    assert engine.url.host == "db.example"
    assert engine.pool._pre_ping


def test_make_engine_sqlite_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = make_engine(f"sqlite:///{path}")

    with engine.connect() as conn:
        assert conn.scalar(text("PRAGMA foreign_keys")) == 1
        assert conn.scalar(text("PRAGMA journal_mode")) == "wal"
    engine.dispose()
    with sqlite3.connect(path) as raw:  # WAL is persistent in the file
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_make_engine_in_memory_sqlite() -> None:
    store = CatalogStore(make_engine("sqlite://"))
    upgrade(store.engine)

    store.upsert_items([FULL_ITEM])

    assert store.get_item(FULL_ITEM.content_id) == FULL_ITEM
