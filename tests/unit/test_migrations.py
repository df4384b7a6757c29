"""Schema migrations on SQLite, plus the contract every backend's migrations must meet.

`MigrationContract` holds the backend-independent tests and needs an `engine` fixture
(an empty database); tests/functional/test_migrations_postgres.py runs it on PostgreSQL.
The contract: an empty database reaches head; a database made by the release before
migrations (``create_all``, with rows) is adopted and keeps its rows; after either, the
database and the models agree (Alembic's autogenerate comparison finds nothing); and
downgrading to base removes everything, after which upgrading works again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from learnrec.schemas import ContentFormat, ContentItem, EventType, Learner
from learnrec.storage import (
    Base,
    CatalogStore,
    IngestStore,
    PrivacyStore,
    TombstoneReason,
    make_engine,
)
from learnrec.storage import schema as schema_module
from learnrec.storage.migrate import (
    BASELINE_TABLES,
    MIGRATIONS_DIR,
    current,
    downgrade,
    head,
    history,
    new_revision,
    on_stack_event,
    scripts_digest,
    upgrade,
)
from learnrec.storage.schema import (
    HEAD,
    REVISIONS,
    VERSION_TABLE,
    SchemaNotReadyError,
    require_schema,
)
from unit import legacy_schema


def differences(engine: Engine) -> list[Any]:
    """What autogenerate would write to make the database match the models (nothing, we hope)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))


def describe(engine: Engine) -> dict[str, Any]:
    """Everything the database says about learnrec's tables, compiled for its dialect.

    Compares what autogenerate skips too: primary key names, collations, column order.
    """
    inspector = inspect(engine)
    dialect = engine.dialect
    tables: dict[str, Any] = {}
    for name in sorted(BASELINE_TABLES):
        columns = [
            (
                c["name"],
                c["type"].compile(dialect=dialect),
                getattr(c["type"], "collation", None),
                c["nullable"],
                c.get("default"),
            )
            for c in inspector.get_columns(name)
        ]
        indexes = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(name)
        )
        pk = inspector.get_pk_constraint(name)
        tables[name] = {
            "columns": columns,
            "indexes": indexes,
            "pk": (pk.get("name"), tuple(pk["constrained_columns"])),
            "foreign_keys": inspector.get_foreign_keys(name),
            "unique": inspector.get_unique_constraints(name),
        }
    return tables


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


class MigrationContract:
    def test_empty_database_to_head(self, engine: Engine) -> None:
        assert current(engine) is None

        assert upgrade(engine) == HEAD

        assert current(engine) == HEAD
        assert tables(engine) == set(Base.metadata.tables) | {VERSION_TABLE}
        assert differences(engine) == []
        assert require_schema(engine) == HEAD

    def test_baseline_is_exactly_what_create_all_made(self, engine: Engine) -> None:
        legacy_schema.METADATA.create_all(engine)
        made_by_create_all = describe(engine)
        legacy_schema.METADATA.drop_all(engine)

        upgrade(engine, REVISIONS[0])

        assert describe(engine) == made_by_create_all

    def test_previous_release_schema_is_adopted_with_its_rows(self, engine: Engine) -> None:
        legacy_schema.create_with_rows(engine)
        with pytest.raises(SchemaNotReadyError, match="no learnrec schema"):
            require_schema(engine)  # what the functions say until the migration has run

        assert upgrade(engine) == HEAD

        assert current(engine) == HEAD
        assert differences(engine) == []
        store = CatalogStore(engine)
        item = store.get_item("py-101")
        assert item == ContentItem(
            content_id="py-101",
            title="Python basics",
            topics=["python"],
            tags=["beginner"],
            level=1,
            format=ContentFormat.VIDEO,
            duration_minutes=12.5,
        )
        assert store.get_learner("h-ada") == Learner(
            user_id="h-ada", level=2, interests=["python"], goals=["data"]
        )
        assert store.is_opted_out("h-bob") is True
        assert store.tombstone("h-bob") is TombstoneReason.OPTED_OUT  # the flag became one
        (entry,) = store.history("h-ada")
        assert (entry.content_id, entry.event_type, entry.ts, entry.weight) == (
            "py-101",
            EventType.COMPLETE,
            legacy_schema.T0,
            3.0,
        )
        # The ledger's rows from before de-duplication was per learner match any learner's
        # event with their id, until the de-duplication window prunes them.
        ledger = IngestStore(engine)
        keys = [("h-ada", "e-1"), ("h-bob", "e-1"), ("h-ada", "e-2")]
        batches, opted_out = ledger.lookup(keys, ["h-ada", "h-bob"])
        assert batches == dict.fromkeys(keys[:2], "events/batch-1.jsonl.gz")
        assert opted_out == {"h-bob"}
        ledger.commit("events/batch-2.jsonl.gz", [("h-ada", "e-2")], [], legacy_schema.T0)
        assert ledger.lookup([("h-ada", "e-2"), ("h-bob", "e-2")], [])[0] == {
            ("h-ada", "e-2"): "events/batch-2.jsonl.gz"
        }
        with engine.begin() as conn:  # the previous release's insert, during a canary
            conn.execute(
                text(
                    "INSERT INTO learnrec_processed_events (event_id, batch_key, processed_at)"
                    " VALUES ('e-3', 'old-code', :at)"
                ),
                {"at": datetime.now(UTC)},
            )
        assert ledger.lookup([("h-bob", "e-3")], [])[0] == {("h-bob", "e-3"): "old-code"}
        # ... and the adopted database takes new writes like a migrated one.
        store.record_history([("h-ada", "py-102", "view", datetime.now(UTC), 1.0)])
        assert len(store.history("h-ada")) == 2

    def test_upgrade_again_changes_nothing(self, engine: Engine) -> None:
        upgrade(engine)
        CatalogStore(engine).set_opt_out("h-ada", True)

        assert upgrade(engine) == HEAD

        assert CatalogStore(engine).is_opted_out("h-ada") is True
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM {VERSION_TABLE}")) == 1

    def test_downgrade_to_base_and_up_again(self, engine: Engine) -> None:
        upgrade(engine)

        assert downgrade(engine, "base") is None

        assert tables(engine) - {VERSION_TABLE} == set()
        assert upgrade(engine) == HEAD
        assert differences(engine) == []

    def test_ledger_downgrade_keeps_one_row_per_event_id(self, engine: Engine) -> None:
        upgrade(engine)
        ledger = IngestStore(engine)
        t0 = legacy_schema.T0
        ledger.commit("b1", [("h-ada", "e-1"), ("h-ada", "e-2")], [], t0)
        ledger.commit("b2", [("h-bob", "e-1")], [], t0.replace(hour=10))

        assert downgrade(engine, "0001") == "0001"

        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, batch_key FROM learnrec_processed_events ORDER BY 1")
            ).all()
        assert [tuple(r) for r in rows] == [("e-1", "b1"), ("e-2", "b1")]
        assert upgrade(engine) == HEAD
        assert ledger.lookup([("h-bob", "e-1")], [])[0] == {("h-bob", "e-1"): "b1"}

    def test_tombstone_downgrade_keeps_every_untracked_learner_untracked(
        self, engine: Engine
    ) -> None:
        upgrade(engine)
        store = CatalogStore(engine)
        store.upsert_learners([Learner(user_id="h-ada", level=2)])
        PrivacyStore(engine).erase_learner("h-ada")
        store.set_opt_out("h-bob", True)

        assert downgrade(engine, "0002") == "0002"

        with engine.connect() as conn:
            flagged = conn.execute(
                text("SELECT user_id FROM learnrec_learners WHERE opted_out ORDER BY 1")
            ).scalars()
            assert list(flagged) == ["h-ada", "h-bob"]
        assert upgrade(engine) == HEAD
        assert store.untracked_among(["h-ada", "h-bob", "h-cy"]) == {"h-ada", "h-bob"}

    def test_partial_schema_is_left_alone(self, engine: Engine) -> None:
        legacy_schema.ITEMS.create(engine)

        with pytest.raises(SchemaNotReadyError, match="not made by learnrec"):
            upgrade(engine)

        assert tables(engine) == {"learnrec_content_items"}


class TestSQLiteMigrations(MigrationContract):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[Engine]:
        engine = make_engine(f"sqlite:///{tmp_path / 'learnrec.db'}")
        yield engine
        engine.dispose()


def test_revisions_known_without_alembic_are_the_scripts_history() -> None:
    # learnrec.storage.schema (what cold starts check) must list every migration script.
    assert history() == list(REVISIONS)
    assert head() == HEAD


def test_a_url_works_like_an_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'by-url.db'}"

    assert current(url) is None
    assert upgrade(url) == HEAD
    assert current(url) == HEAD


def test_functions_refuse_an_older_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine)
    # As if this code were one release ahead of the database.
    monkeypatch.setattr(schema_module, "REVISIONS", (HEAD, "9999"))
    monkeypatch.setattr(schema_module, "HEAD", "9999")

    with pytest.raises(SchemaNotReadyError, match=f"at revision {HEAD}, this code needs 9999"):
        require_schema(engine)


def test_a_newer_schema_is_accepted_and_left_alone(tmp_path: Path) -> None:
    # A migration of the next release ran (canary, or the code rolled back): the
    # previous code keeps working, since migrations keep the previous release working.
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))

    assert require_schema(engine) == "9999"
    # ... and so does this release's migration (a rollback deploys it again).
    assert upgrade(engine) == "9999"
    assert on_stack_event({"RequestType": "Update"}, lambda: str(engine.url))["Data"] == {
        "Revision": "9999",
        "From": "9999",
    }


def test_scripts_digest_follows_the_scripts(tmp_path: Path) -> None:
    copy = shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    assert scripts_digest(copy) == scripts_digest()
    (copy / "versions" / "__pycache__").mkdir(exist_ok=True)
    (copy / "versions" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"\0")
    assert scripts_digest(copy) == scripts_digest()  # caches are not migrations

    baseline = next((copy / "versions").glob("0001_*.py"))
    original = baseline.read_text()
    changed = original.replace('"title", sa.String(512)', '"title", sa.String(600)')
    assert changed != original
    baseline.write_text(changed)

    assert scripts_digest(copy) != scripts_digest()


def test_new_revision_is_autogenerated_from_the_models(tmp_path: Path) -> None:
    copy = shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    engine = make_engine(f"sqlite:///{tmp_path / 'dev.db'}")
    upgrade(engine)
    with engine.begin() as conn:  # as if the models had gained this index
        conn.execute(text("DROP INDEX ix_learnrec_processed_events_at"))

    path = new_revision("index processed_at", engine, directory=copy)

    following = f"{int(HEAD) + 1:04d}"
    assert path.name == f"{following}_index_processed_at.py"
    script = path.read_text()
    assert f"down_revision = '{HEAD}'" in script
    assert "create_index('ix_learnrec_processed_events_at'" in script
    assert head(copy) == following
    assert head() == HEAD  # the package's own scripts are untouched


def test_a_new_script_changes_the_digest(tmp_path: Path) -> None:
    copy = shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    (copy / "versions" / "9999_next.py").write_text(
        f'revision = "9999"\ndown_revision = "{HEAD}"\n'
    )

    assert scripts_digest(copy) != scripts_digest()


class TestStackEvent:
    def test_create_and_update_migrate(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'cfn.db'}"
        event = {"RequestType": "Create", "ResourceProperties": {"MigrationsDigest": "x"}}

        created = on_stack_event(event, lambda: url)

        assert created == {
            "PhysicalResourceId": "learnrec-schema",
            "Data": {"Revision": HEAD, "From": ""},
        }
        updated = on_stack_event(
            {**event, "RequestType": "Update", "PhysicalResourceId": "learnrec-schema"},
            lambda: url,
        )
        assert updated["Data"] == {"Revision": HEAD, "From": HEAD}
        assert updated["PhysicalResourceId"] == "learnrec-schema"

    def test_delete_keeps_the_data_and_needs_no_database(self) -> None:
        def no_database() -> str:
            raise AssertionError("Delete must not touch the database")

        response = on_stack_event(
            {"RequestType": "Delete", "PhysicalResourceId": "learnrec-schema"}, no_database
        )

        assert response == {"PhysicalResourceId": "learnrec-schema"}

    def test_unknown_request_fails(self) -> None:
        with pytest.raises(ValueError, match="request type"):
            on_stack_event({"RequestType": "Replace"}, lambda: "sqlite://")


def test_cold_starts_check_the_schema_and_never_create_it(tmp_path: Path) -> None:
    import boto3

    from learnrec.config import Settings
    from learnrec.events.ingest import ingestor_from_settings
    from learnrec.serving.context import build_context
    from learnrec.serving.readiness import NotReadyError

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    settings = Settings(
        database_url=url,
        model_store=str(tmp_path / "models"),
        s3_bucket="learnrec-test",
        dead_letter_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
        user_id_hash_key="k",
    )
    session = boto3.Session(
        region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )

    # The API answers 503 naming the schema (learnrec.serving.readiness), not a crash.
    with pytest.raises(NotReadyError, match="learnrec db upgrade") as unready:
        build_context(settings)
    assert "database_schema" in {problem.dependency for problem in unready.value.problems}
    with pytest.raises(SchemaNotReadyError, match="no learnrec schema"):
        ingestor_from_settings(settings, session)

    engine = make_engine(url)
    assert tables(engine) == set()  # neither made a table
    upgrade(engine)
    ingestor_from_settings(settings, session)  # once migrated, the function starts
    engine.dispose()


def test_db_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from learnrec_dev.cli import main

    url = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]

    def run(*args: str) -> tuple[int, Any]:
        code = main(["db", *args, *url])
        return code, json.loads(capsys.readouterr().out)

    assert run("current", "--check") == (1, {"revision": None, "head": HEAD, "at_head": False})
    assert run("upgrade") == (0, {"from": None, "revision": HEAD})
    assert run("current", "--check") == (0, {"revision": HEAD, "head": HEAD, "at_head": True})
    assert run("upgrade") == (0, {"from": HEAD, "revision": HEAD})
    assert run("downgrade", "base") == (0, {"from": HEAD, "revision": None})
