"""The ingest ledger: which event ids were already archived, and by which batch.

Kinesis delivers at least once, and producers retry, so the same event can arrive twice:
in a retried batch (same shard and sequence range) or in a later one (a producer's
resend). The ingest function archives each batch under a key derived from its sequence
range, so a retried batch overwrites its own object; the ledger covers the other case.
Each archived event id is recorded with the key of the batch that archived it, and an id
already recorded under a *different* key is a duplicate. Ids recorded under the batch's
own key are not: the retry must write them into the same object again, or overwriting
that object would lose them.

Rows are committed only after the batch's object is in S3, so an id in the ledger is
always an id in the archive. Rows older than the de-duplication window are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine, Index, String, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from .catalog import Base, HistoryRow, UTCDateTime, opted_out_among, record_history_in

# event ids are <= 128 characters (schemas.Identifier); dead-letter entries are keyed by
# their stream position (see learnrec.events.ingest), which fits too.
_KEY = String(200).with_variant(String(200, collation="C"), "postgresql")
# SQLite's default limit on bound variables is 32766; PostgreSQL's is 65535.
_QUERY_CHUNK = 1000


class ProcessedEventRow(Base):
    """One archived event id (or dead-lettered record) and the batch that handled it."""

    __tablename__ = "learnrec_processed_events"
    __table_args__ = (Index("ix_learnrec_processed_events_at", "processed_at"),)

    event_id: Mapped[str] = mapped_column(_KEY, primary_key=True)
    batch_key: Mapped[str] = mapped_column(String(512))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())


PROCESSED: Table = Base.metadata.tables[ProcessedEventRow.__tablename__]


def batches_of(conn: Connection, event_ids: Iterable[str]) -> dict[str, str]:
    """For the ids already in the ledger, the key of the batch that recorded each."""
    ids = list(dict.fromkeys(event_ids))
    found: dict[str, str] = {}
    for start in range(0, len(ids), _QUERY_CHUNK):
        chunk = ids[start : start + _QUERY_CHUNK]
        stmt = select(PROCESSED.c.event_id, PROCESSED.c.batch_key).where(
            PROCESSED.c.event_id.in_(chunk)
        )
        found.update((str(i), str(k)) for i, k in conn.execute(stmt))
    return found


def record(conn: Connection, event_ids: Sequence[str], batch_key: str, at: datetime) -> None:
    """Add ids to the ledger; an id already there keeps its first batch."""
    rows = [
        {"event_id": i, "batch_key": batch_key, "processed_at": at}
        for i in dict.fromkeys(event_ids)
    ]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(PROCESSED).on_conflict_do_nothing(), rows)
    else:
        conn.execute(sqlite_insert(PROCESSED).on_conflict_do_nothing(), rows)


def prune(conn: Connection, before: datetime) -> int:
    """Forget ids processed before ``before``; return how many went."""
    result = conn.execute(delete(PROCESSED).where(PROCESSED.c.processed_at < before))
    return int(result.rowcount or 0)


class IngestStore:
    """What the ingest function reads and writes per batch, in two round trips.

    Before archiving: which ids are already in the ledger and which learners opted out
    (one connection). After archiving: the ledger rows and the learners' history in one
    transaction, so the history never runs ahead of the ledger or behind it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(
        self, event_ids: Iterable[str], user_ids: Iterable[str]
    ) -> tuple[dict[str, str], set[str]]:
        """(batch key per already-recorded id, learners among ``user_ids`` who opted out)."""
        with self.engine.connect() as conn:
            return batches_of(conn, event_ids), opted_out_among(conn, user_ids)

    def commit(
        self,
        batch_key: str,
        event_ids: Sequence[str],
        history: Iterable[HistoryRow],
        at: datetime,
    ) -> int:
        """Record the batch's ids and merge its history; return history rows written."""
        with self.engine.begin() as conn:
            record(conn, event_ids, batch_key, at)
            return record_history_in(conn, history)

    def prune(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return prune(conn, before)
