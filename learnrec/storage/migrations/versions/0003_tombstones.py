"""Tombstones: erased and opted-out learners stay untracked, by hashed id alone.

Before this revision an opt-out lived only on the profile row, and erasing a learner
deleted that row, so tracking resumed after an erasure. Existing opt-outs become
tombstones (requested when their profile was last updated). The profile's ``opted_out``
column stays: the previous release reads and writes it during a canary or after a
rollback, and this release still honours it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "learnrec_tombstones"
ID = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("user_id", ID, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("requested_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("purged_at", UTC_TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.execute(
        sa.text(
            f"INSERT INTO {TABLE} (user_id, reason, requested_at) "
            "SELECT user_id, 'opted_out', updated_at FROM learnrec_learners WHERE opted_out"
        )
    )


def downgrade() -> None:
    # Every tombstoned learner keeps a flagged (bare) profile row, the only form of
    # "untracked" the previous schema knows, so no one is tracked again.
    empty = "'[]'::jsonb" if op.get_bind().dialect.name == "postgresql" else "'[]'"
    op.execute(
        sa.text(
            "UPDATE learnrec_learners SET opted_out = TRUE "
            f"WHERE user_id IN (SELECT user_id FROM {TABLE})"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO learnrec_learners (user_id, level, interests, goals, opted_out, "
            f"updated_at) SELECT t.user_id, NULL, {empty}, {empty}, TRUE, t.requested_at "
            f"FROM {TABLE} AS t WHERE NOT EXISTS "
            "(SELECT 1 FROM learnrec_learners AS l WHERE l.user_id = t.user_id)"
        )
    )
    op.drop_table(TABLE)
