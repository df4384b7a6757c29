"""Baseline: the catalog, learner profiles, learner history and the ingest ledger.

Exactly the schema that ``metadata.create_all`` made before migrations existed, on
PostgreSQL and SQLite alike, so that databases made that way are adopted by stamping
this revision (see learnrec.storage.migrate). The types are spelled out here rather
than imported from the models: a migration must keep describing its own point in time.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Identifiers compare byte-wise on PostgreSQL, as on SQLite (collation "C").
ID = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
KEY = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")
JSON_LIST = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "learnrec_content_items",
        sa.Column("content_id", ID, nullable=False),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("topics", JSON_LIST, nullable=False),
        sa.Column("tags", JSON_LIST, nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("duration_minutes", sa.Float(), nullable=True),
        sa.Column("prerequisites", JSON_LIST, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("content_id"),
    )
    op.create_table(
        "learnrec_learners",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=True),
        sa.Column("interests", JSON_LIST, nullable=False),
        sa.Column("goals", JSON_LIST, nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "learnrec_learner_history",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("content_id", ID, nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("ts", UTC_TIMESTAMP, nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "content_id"),
    )
    op.create_index(
        "ix_learnrec_learner_history_user_ts",
        "learnrec_learner_history",
        ["user_id", "ts"],
    )
    op.create_table(
        "learnrec_processed_events",
        sa.Column("event_id", KEY, nullable=False),
        sa.Column("batch_key", sa.String(512), nullable=False),
        sa.Column("processed_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_learnrec_processed_events_at", "learnrec_processed_events", ["processed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_learnrec_processed_events_at", table_name="learnrec_processed_events")
    op.drop_table("learnrec_processed_events")
    op.drop_index("ix_learnrec_learner_history_user_ts", table_name="learnrec_learner_history")
    op.drop_table("learnrec_learner_history")
    op.drop_table("learnrec_learners")
    op.drop_table("learnrec_content_items")
