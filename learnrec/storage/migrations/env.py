"""Alembic's environment: migrate through the connection that learnrec.storage.migrate opened.

Only online migrations through a caller's connection are supported; the caller owns
the transaction (and, on PostgreSQL, the migration lock).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from learnrec.storage import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "learnrec migrations run through learnrec.storage.migrate (or `learnrec db upgrade`), "
        "which passes a database connection; offline SQL generation is not supported"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters tables by copying them: batch mode does that, so local databases
    # follow the same migrations as Aurora.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
