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

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "learnrec_processed_events"
OWNER = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
PRIMARY_KEY = "learnrec_processed_events_pkey"  # PostgreSQL's name for 0001's key


def upgrade() -> None:
    user_id = sa.Column("user_id", OWNER, nullable=False, server_default="*")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column(TABLE, user_id)  # a constant default: no table rewrite
        op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
        op.create_primary_key(PRIMARY_KEY, TABLE, ["user_id", "event_id"])
        return
    # SQLite cannot alter a primary key: batch mode copies the table with the new one.
    with op.batch_alter_table(TABLE, recreate="always") as batch:
        batch.add_column(user_id, insert_before="event_id")
        batch.create_primary_key(PRIMARY_KEY, ["user_id", "event_id"])


def downgrade() -> None:
    # One row per event id again: keep the earliest recorded of each.
    op.execute(
        sa.text(
            f"DELETE FROM {TABLE} AS t WHERE EXISTS (SELECT 1 FROM {TABLE} AS o "
            "WHERE o.event_id = t.event_id AND (o.processed_at, o.user_id) "
            "< (t.processed_at, t.user_id))"
        )
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(PRIMARY_KEY, TABLE, type_="primary")
        op.drop_column(TABLE, "user_id")
        op.create_primary_key(PRIMARY_KEY, TABLE, ["event_id"])
        return
    with op.batch_alter_table(TABLE, recreate="always") as batch:
        batch.drop_column("user_id")
        batch.create_primary_key(PRIMARY_KEY, ["event_id"])
