"""De-duplication per learner: the ingest ledger's key becomes (hashed user id, event id).

Event ids come from clients. Keyed by the id alone, a learner could suppress another
learner's events by sending their ids first, and two learners' events sharing an id lost
one of them.

Existing rows are kept, not reset: the ledger never stored whose event a row was (only
the S3 archive knows, and a migration should not read the archive), so they get
``user_id = '*'`` and the ingest code treats that as "any learner", exactly the
de-duplication they were written for. They leave with the rest of the de-duplication
window (7 days) when the ingest function prunes. Resetting the ledger instead would
archive again any event resent or redelivered within that window. The column's server
default is the same '*', so the previous release's code, which inserts without it,
keeps working during a canary or after a rollback, and its rows match as before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "learnrec_processed_events"
COPY = "_learnrec_processed_events_copy"
INDEX = "ix_learnrec_processed_events_at"
OWNER = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
KEY = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")
PRIMARY_KEY = "learnrec_processed_events_pkey"  # PostgreSQL's name for 0001's key


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A constant default: PostgreSQL adds the column without rewriting the table.
        op.add_column(TABLE, sa.Column("user_id", OWNER, nullable=False, server_default="*"))
        op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
        op.create_primary_key(PRIMARY_KEY, TABLE, ["user_id", "event_id"])
        return
    # SQLite cannot alter a primary key: copy the rows into the new table and swap.
    _copy_table(["user_id", "event_id"], "'*', event_id, batch_key, processed_at")


def downgrade() -> None:
    # One row per event id again: keep the earliest recorded of each.
    op.execute(
        sa.text(
            f"DELETE FROM {TABLE} WHERE EXISTS (SELECT 1 FROM {TABLE} AS o "
            f"WHERE o.event_id = {TABLE}.event_id AND (o.processed_at, o.user_id) "
            f"< ({TABLE}.processed_at, {TABLE}.user_id))"
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
        op.drop_column(TABLE, "user_id")
        op.create_primary_key(PRIMARY_KEY, TABLE, ["event_id"])
        return
    _copy_table(["event_id"], "event_id, batch_key, processed_at")


def _copy_table(primary_key: list[str], select: str) -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("event_id", KEY, nullable=False),
        sa.Column("batch_key", sa.String(512), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]
    if "user_id" in primary_key:
        columns.insert(0, sa.Column("user_id", OWNER, nullable=False, server_default="*"))
    op.create_table(COPY, *columns, sa.PrimaryKeyConstraint(*primary_key))
    names = ", ".join(c.name for c in columns)
    op.execute(sa.text(f"INSERT INTO {COPY} ({names}) SELECT {select} FROM {TABLE}"))
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
    op.rename_table(COPY, TABLE)
    op.create_index(INDEX, TABLE, ["processed_at"])
