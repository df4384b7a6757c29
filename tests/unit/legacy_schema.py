"""The schema as the release before migrations made it: ``metadata.create_all`` of its models.

Frozen here as plain tables (the models will move on; this must not), so the migration
tests can build a database exactly as that release left it, rows included, and check
that upgrading adopts it. Copied from learnrec/storage/catalog.py and ledger.py of that
release: same names, types, collations, nullability and indexes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    MetaData,
    SmallInteger,
    String,
    Table,
    insert,
)
from sqlalchemy.dialects.postgresql import JSONB

_ID = String(128).with_variant(String(128, collation="C"), "postgresql")
_KEY = String(200).with_variant(String(200, collation="C"), "postgresql")
_JSON_LIST = JSON().with_variant(JSONB(), "postgresql")
_TS = DateTime(timezone=True)

METADATA = MetaData()
ITEMS = Table(
    "learnrec_content_items",
    METADATA,
    Column("content_id", _ID, primary_key=True),
    Column("title", String(512), nullable=False),
    Column("topics", _JSON_LIST, nullable=False),
    Column("tags", _JSON_LIST, nullable=False),
    Column("level", SmallInteger),
    Column("format", String(32)),
    Column("duration_minutes", Float),
    Column("prerequisites", _JSON_LIST, nullable=False),
    Column("updated_at", _TS, nullable=False),
)
LEARNERS = Table(
    "learnrec_learners",
    METADATA,
    Column("user_id", _ID, primary_key=True),
    Column("level", SmallInteger),
    Column("interests", _JSON_LIST, nullable=False),
    Column("goals", _JSON_LIST, nullable=False),
    Column("opted_out", Boolean, nullable=False),
    Column("updated_at", _TS, nullable=False),
)
HISTORY = Table(
    "learnrec_learner_history",
    METADATA,
    Column("user_id", _ID, primary_key=True),
    Column("content_id", _ID, primary_key=True),
    Column("event_type", String(32), nullable=False),
    Column("ts", _TS, nullable=False),
    Column("weight", Float, nullable=False),
    Index("ix_learnrec_learner_history_user_ts", "user_id", "ts"),
)
PROCESSED = Table(
    "learnrec_processed_events",
    METADATA,
    Column("event_id", _KEY, primary_key=True),
    Column("batch_key", String(512), nullable=False),
    Column("processed_at", _TS, nullable=False),
    Index("ix_learnrec_processed_events_at", "processed_at"),
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _utc(engine: Engine, value: datetime) -> datetime:
    # That release stored naive UTC on SQLite (its UTCDateTime type did the conversion).
    return value if engine.dialect.name == "postgresql" else value.replace(tzinfo=None)


def create_with_rows(engine: Engine) -> None:
    """Create the tables as that release did and put a few rows of each kind in them."""
    METADATA.create_all(engine)
    at = _utc(engine, T0)
    with engine.begin() as conn:
        conn.execute(
            insert(ITEMS),
            [
                {
                    "content_id": "py-101",
                    "title": "Python basics",
                    "topics": ["python"],
                    "tags": ["beginner"],
                    "level": 1,
                    "format": "video",
                    "duration_minutes": 12.5,
                    "prerequisites": [],
                    "updated_at": at,
                }
            ],
        )
        conn.execute(
            insert(LEARNERS),
            [
                {
                    "user_id": "h-ada",
                    "level": 2,
                    "interests": ["python"],
                    "goals": ["data"],
                    "opted_out": False,
                    "updated_at": at,
                },
                {
                    "user_id": "h-bob",
                    "level": None,
                    "interests": [],
                    "goals": [],
                    "opted_out": True,
                    "updated_at": at,
                },
            ],
        )
        conn.execute(
            insert(HISTORY),
            [
                {
                    "user_id": "h-ada",
                    "content_id": "py-101",
                    "event_type": "complete",
                    "ts": at,
                    "weight": 3.0,
                }
            ],
        )
        conn.execute(
            insert(PROCESSED),
            [{"event_id": "e-1", "batch_key": "events/batch-1.jsonl.gz", "processed_at": at}],
        )
