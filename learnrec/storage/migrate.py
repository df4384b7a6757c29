"""Schema migrations with Alembic: the one way learnrec's tables are created or changed.

The scripts live in ``learnrec/storage/migrations`` (inside the package, so the Lambda
function that migrates at deploy time ships them) and Alembic is configured here in
code: no ``alembic.ini`` is read at run time. Everything that needs tables calls
:func:`upgrade` once at set-up (``learnrec db upgrade``, the local demo, the catalog
loader, benchmarks, test fixtures, and in AWS the migration function on each deployment);
request paths and cold starts only check the revision (:mod:`learnrec.storage.schema`).

Databases made before migrations existed were created by ``metadata.create_all`` and
have the tables of revision :data:`BASELINE` but no version table. :func:`upgrade`
adopts them: it stamps the baseline, then upgrades, keeping every row.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from .catalog import make_engine
from .schema import REVISIONS, VERSION_TABLE, SchemaNotReadyError, database_revision

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE = REVISIONS[0]
# The tables that metadata.create_all made before migrations existed (= revision 0001).
BASELINE_TABLES = frozenset(
    {
        "learnrec_content_items",
        "learnrec_learners",
        "learnrec_learner_history",
        "learnrec_processed_events",
    }
)
# Two migrations of one PostgreSQL database (two deployments, a deployment and a local
# run) wait for each other on this transaction-level advisory lock.
_LOCK_KEY = zlib.crc32(b"learnrec schema migration")

logger = logging.getLogger(__name__)


def alembic_config(
    connection: Connection | None = None, directory: Path = MIGRATIONS_DIR
) -> Config:
    """Alembic's configuration, built in code; env.py migrates through `connection`."""
    config = Config()
    config.set_main_option("script_location", str(directory))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head(directory: Path = MIGRATIONS_DIR) -> str:
    """The newest revision among the migration scripts."""
    revision = ScriptDirectory.from_config(alembic_config(directory=directory)).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships revision 0001
        raise RuntimeError(f"no migration scripts in {MIGRATIONS_DIR}")
    return revision


def history() -> list[str]:
    """Every revision, oldest first (the scripts' history is linear)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


@contextmanager
def _migrating(target: str | Engine | None) -> Iterator[Connection]:
    """One transaction for the whole migration, holding the migration lock on PostgreSQL.

    `target` is an engine (used as is), a URL, or None for ``$DATABASE_URL``.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            yield conn
    finally:
        if engine is not target:
            engine.dispose()


def _adopt(conn: Connection, config: Config) -> None:
    """Stamp the baseline on a database that create_all made, before any migration runs.

    Only a complete baseline is adopted: a database with some of the tables but not all
    is not one that learnrec made, and guessing what it holds could lose data.
    """
    if database_revision(conn) is not None:
        return
    present = BASELINE_TABLES & set(inspect(conn).get_table_names())
    if not present:
        return
    missing = sorted(BASELINE_TABLES - present)
    if missing:
        raise SchemaNotReadyError(
            f"the database has some of learnrec's tables but not {', '.join(missing)} and no "
            f"{VERSION_TABLE} table; it was not made by learnrec, so it is left alone"
        )
    logger.info("adopting a schema made before migrations: stamping %s", BASELINE)
    command.stamp(config, BASELINE)


def upgrade(target: str | Engine | None = None, revision: str = "head") -> str:
    """Bring the database to `revision` (default: the newest); return where it is now.

    Safe to run again and from several places at once: an up-to-date database is left
    as it is, and on PostgreSQL concurrent runs are serialised. A database at a revision
    these scripts do not know was migrated by a newer release; it is left as it is too
    (that is how a code rollback, or CloudFormation rolling back a failed deployment,
    gets past the migration), like the functions accept it (see ``schema``).
    """
    with _migrating(target) as conn:
        config = alembic_config(conn)
        _adopt(conn, config)
        at = database_revision(conn)
        if revision == "head" and at is not None and at not in history():
            logger.warning("database at %s, newer than these migrations: left as it is", at)
            return at
        command.upgrade(config, revision)
        return _revision_or_fail(conn)


def downgrade(target: str | Engine | None, revision: str) -> str | None:
    """Take the database back to `revision` ("base" drops every table and its data)."""
    with _migrating(target) as conn:
        command.downgrade(alembic_config(conn), revision)
        return database_revision(conn)


def current(target: str | Engine | None = None) -> str | None:
    """The database's revision (None: no schema, or one made before migrations)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as conn:
            return database_revision(conn)
    finally:
        if engine is not target:
            engine.dispose()


def new_revision(
    message: str, target: str | Engine | None = None, directory: Path = MIGRATIONS_DIR
) -> Path:
    """Write the next migration script, autogenerated from the models' difference to a
    database at head (`target`); review it, then add it to ``schema.REVISIONS``."""
    latest = head(directory)
    with _migrating(target) as conn:
        if database_revision(conn) != latest:
            raise SchemaNotReadyError(f"autogenerate needs a database at {latest}: upgrade first")
        script = command.revision(
            alembic_config(conn, directory),
            message=message,
            autogenerate=True,
            rev_id=f"{int(latest) + 1:04d}",
        )
    if script is None or isinstance(script, list):  # pragma: no cover - one head, one script
        raise RuntimeError("Alembic wrote no single revision")
    return Path(script.path)


def _revision_or_fail(conn: Connection) -> str:
    revision = database_revision(conn)
    if revision is None:  # pragma: no cover - Alembic stamps every upgrade
        raise RuntimeError("the upgrade left no revision stamped")
    return revision


def scripts_digest(directory: Path = MIGRATIONS_DIR) -> str:
    """A hash of the migration scripts: it changes exactly when a migration does.

    The stack passes it to the deploy-time migration as a property, so CloudFormation
    runs the migration again whenever the scripts change.
    """
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def on_stack_event(event: Mapping[str, Any], url: Callable[[], str]) -> dict[str, Any]:
    """Answer a CloudFormation custom resource event (through the CDK provider framework).

    Create and Update bring the database to the newest revision, and an exception fails
    the deployment before any function that needs the new schema is updated. Delete
    (the stack or the resource going away) leaves the schema and its data alone, and
    so needs no database.
    """
    request = event.get("RequestType")
    physical_id = str(event.get("PhysicalResourceId") or "learnrec-schema")
    if request == "Delete":
        return {"PhysicalResourceId": physical_id}
    if request not in ("Create", "Update"):
        raise ValueError(f"unknown custom resource request type {request!r}")
    database = url()
    before = current(database)
    revision = upgrade(database)
    logger.info("schema migrated", extra={"from": before, "to": revision})
    return {"PhysicalResourceId": physical_id, "Data": {"Revision": revision, "From": before or ""}}
