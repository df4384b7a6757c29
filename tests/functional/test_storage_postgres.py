"""CatalogStore on a real PostgreSQL, held to the same contract as SQLite.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres, database `test`), or the
URL in $LEARNREC_TEST_POSTGRES_URL. Each session works in its own throw-away schema, so
parallel runs and other suites sharing the database don't see each other's rows.
Without a server the tests skip locally, but fail under CI: a silently skipped backend
there would pass a build that was never tested against PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from unit.test_storage import StorageContract

from learnrec.storage import Base, CatalogStore, make_engine
from learnrec.storage.migrate import upgrade

pytestmark = pytest.mark.postgres

POSTGRES_URL = os.environ.get(
    "LEARNREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    admin = make_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        where = admin.url.render_as_string(hide_password=True)
        message = f"PostgreSQL is not reachable at {where}: {exc.orig}"
        if _in_ci():
            pytest.fail(f"{message} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(message)

    schema = f"learnrec_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(
        POSTGRES_URL, connect_args={"connect_timeout": 5, "options": f"-csearch_path={schema}"}
    )
    try:
        upgrade(engine)
        with engine.connect() as conn:  # guard: the tables really are in our schema
            assert conn.scalar(text("SELECT current_schema()")) == schema
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


class TestPostgresStorage(StorageContract):
    @pytest.fixture
    def store(self, pg_engine: Engine) -> CatalogStore:
        with pg_engine.begin() as conn:
            names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names}"))
        return CatalogStore(pg_engine)
