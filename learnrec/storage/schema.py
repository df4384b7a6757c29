"""Which schema revision a database is at, read without Alembic.

Functions that only use the tables (the API, ingest) check the revision at cold start
instead of creating tables: the schema belongs to the deploy-time migration
(:mod:`learnrec.storage.migrate`), and a function that created or altered tables on its
own would race the migration and other instances. This module needs SQLAlchemy alone,
so those functions need not ship Alembic; ``tests/unit/test_migrations.py`` checks that
:data:`REVISIONS` lists exactly the migration scripts' history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, column, event, inspect, select, table

# Every revision of learnrec's schema, oldest first; the last is what this code needs.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003")
HEAD = REVISIONS[-1]
VERSION_TABLE = "alembic_version"

_VERSIONS = table(VERSION_TABLE, column("version_num"))
UPGRADE_HINT = (
    "run the schema migration: `learnrec db upgrade --database-url URL` locally, "
    "the stack's migration function in AWS (it runs on every deployment)"
)


class SchemaNotReadyError(RuntimeError):
    """The database's schema is missing or older than this code needs."""


def _stamped(conn: Connection) -> list[str] | None:
    """The revisions in the version table; None when there is no such table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return [str(row) for row in conn.execute(select(_VERSIONS.c.version_num)).scalars()]


def database_revision(conn: Connection) -> str | None:
    """The revision stamped in the database; None when it has no version table or row."""
    rows = _stamped(conn) or []
    if len(rows) > 1:  # learnrec's history is linear: two heads mean someone branched
        raise SchemaNotReadyError(f"the database is stamped with several revisions: {sorted(rows)}")
    return rows[0] if rows else None


def accepted_revision(rows: Sequence[str] | None) -> str:
    """The stamped revision when this code can work with it, else :class:`SchemaNotReadyError`.

    ``rows``: the version table's rows, None when there is no table. A revision this code
    does not know is accepted: it comes from a newer release whose migration already ran
    (during a canary, or after a rollback of the code), and migrations keep the previous
    release working. Only a missing or older schema stops a function from starting.
    """
    if rows is not None and len(rows) > 1:
        raise SchemaNotReadyError(f"the database is stamped with several revisions: {sorted(rows)}")
    if not rows:
        raise SchemaNotReadyError(
            f"the database has no learnrec schema (expected {HEAD}); {UPGRADE_HINT}"
        )
    if rows[0] in REVISIONS[:-1]:
        raise SchemaNotReadyError(
            f"the database schema is at revision {rows[0]}, this code needs {HEAD}; {UPGRADE_HINT}"
        )
    return rows[0]


def require_schema(engine: Engine) -> str:
    """Return the database's revision if this code can use it (:func:`accepted_revision`).

    The schema is never created here: it belongs to the deploy-time migration.
    """
    with engine.connect() as conn:
        return accepted_revision(_stamped(conn))


def check_on_first_connect(engine: Engine) -> None:
    """Check the schema when ``engine`` first reaches the database, not now.

    For a process that starts while the database is unreachable and should serve what it
    can meanwhile: the check (:func:`require_schema`'s) runs on the first connection that
    succeeds, and again on the next one as long as it fails, so a schema that is missing
    or too old still stops every use of the database with :class:`SchemaNotReadyError`.
    """

    def check(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")
            rows: list[str] | None = [str(row[0]) for row in cursor.fetchall()]
        except Exception:  # no version table: no learnrec schema
            rows = None
        finally:
            cursor.close()
        accepted_revision(rows)

    event.listen(engine, "first_connect", check)
