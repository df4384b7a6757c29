"""The ingest ledger: which events were already archived, and by which batch.

Kinesis delivers at least once, and producers retry, so the same event can arrive twice:
in a retried batch (same shard and sequence range) or in a later one (a producer's
resend). The ingest function archives each batch under a key derived from its sequence
range, so a retried batch overwrites its own object; the ledger covers the other case.
Each archived event is recorded under its learner's hashed id and its event id, with
the key of the batch that archived it, and an event already recorded under a
*different* key is a duplicate. Ids recorded under the batch's own key are not: the
retry must write them into the same object again, or overwriting that object would
lose them.

The key is per learner because event ids come from clients: keyed by the id alone, one
learner could suppress another's events by sending their ids first, and two learners'
events that share an id would lose one. Rows from before that (revision 0001, and rows
written by that release's code during a canary or after a rollback) have no learner:
``user_id`` is :data:`ANY_LEARNER` and they match the id for every learner, as they did
when written, until they are pruned with the rest of the de-duplication window.

Rows are committed only after the batch's object is in S3, so an id in the ledger is
always an id in the archive. Rows older than the de-duplication window are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine, Index, String, Table, and_, delete, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .catalog import Base, HistoryRow, UTCDateTime, record_history_in, untracked_among

# event ids are <= 128 characters (schemas.Identifier); dead-letter entries are keyed by
# their stream position (see learnrec.events.ingest), which fits too.
_KEY = String(200).with_variant(String(200, collation="C"), "postgresql")
_OWNER = String(128).with_variant(String(128, collation="C"), "postgresql")
# SQLite's default limit on bound variables is 32766; PostgreSQL's is 65535.
_QUERY_CHUNK = 1000

ANY_LEARNER = "*"
"""The owner of rows recorded before de-duplication was per learner (never a hashed id,
which is hex): they match the event id for every learner."""
STREAM_POSITION = "-"
"""The owner of dead-letter entries, keyed by stream position: no learner (and never a
hashed id, which is hex)."""

LedgerKey = tuple[str, str]
"""(hashed user id, or :data:`STREAM_POSITION` for a dead letter; event id)."""


DATA_ERRORS = (DataError, IntegrityError)
"""Errors the database raises for what a row holds, not for how it is reached: retrying
the same rows fails the same way, so the ingest function sets the rows aside instead."""


class ProcessedEventRow(Base):
    """One archived event (or dead-lettered record) and the batch that handled it."""

    __tablename__ = "learnrec_processed_events"
    __table_args__ = (Index("ix_learnrec_processed_events_at", "processed_at"),)

    # The previous release inserts without it: its rows get ANY_LEARNER.
    user_id: Mapped[str] = mapped_column(_OWNER, primary_key=True, server_default=ANY_LEARNER)
    event_id: Mapped[str] = mapped_column(_KEY, primary_key=True)
    batch_key: Mapped[str] = mapped_column(String(512))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())


PROCESSED: Table = Base.metadata.tables[ProcessedEventRow.__tablename__]


def batches_of(conn: Connection, keys: Iterable[LedgerKey]) -> dict[LedgerKey, str]:
    """For the keys already in the ledger, the key of the batch that recorded each.

    A row of :data:`ANY_LEARNER` with the same event id counts for every learner (it was
    written before the ledger knew learners); the learner's own row wins over it.
    """
    wanted = list(dict.fromkeys(keys))
    found: dict[LedgerKey, str] = {}
    legacy: dict[str, str] = {}
    for start in range(0, len(wanted), _QUERY_CHUNK):
        chunk = wanted[start : start + _QUERY_CHUNK]
        ids = list({event_id for _, event_id in chunk})
        stmt = select(PROCESSED.c.user_id, PROCESSED.c.event_id, PROCESSED.c.batch_key).where(
            or_(
                tuple_(PROCESSED.c.user_id, PROCESSED.c.event_id).in_(chunk),
                and_(PROCESSED.c.user_id == ANY_LEARNER, PROCESSED.c.event_id.in_(ids)),
            )
        )
        for user_id, event_id, batch_key in conn.execute(stmt):
            if user_id == ANY_LEARNER:
                legacy[str(event_id)] = str(batch_key)
            else:
                found[(str(user_id), str(event_id))] = str(batch_key)
    for key in wanted:
        if key not in found and key[1] in legacy:
            found[key] = legacy[key[1]]
    return found


def record(conn: Connection, keys: Sequence[LedgerKey], batch_key: str, at: datetime) -> None:
    """Add keys to the ledger; a key already there keeps its first batch."""
    rows = [
        {"user_id": user_id, "event_id": event_id, "batch_key": batch_key, "processed_at": at}
        for user_id, event_id in dict.fromkeys(keys)
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

    Before archiving: which ids are already in the ledger and which learners are untracked
    (opted out or erased; one connection). After archiving: the ledger rows and the
    learners' history in one transaction, so the history never runs ahead of the ledger
    or behind it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(
        self, keys: Iterable[LedgerKey], user_ids: Iterable[str]
    ) -> tuple[dict[LedgerKey, str], set[str]]:
        """(batch key per already-recorded key, the untracked learners among ``user_ids``)."""
        with self.engine.connect() as conn:
            return batches_of(conn, keys), untracked_among(conn, user_ids)

    def commit(
        self,
        batch_key: str,
        keys: Sequence[LedgerKey],
        history: Iterable[HistoryRow],
        at: datetime,
    ) -> int:
        """Record the batch's keys and merge its history; return history rows written."""
        with self.engine.begin() as conn:
            record(conn, keys, batch_key, at)
            return record_history_in(conn, history)

    def refused(
        self,
        batch_key: str,
        entries: Sequence[tuple[LedgerKey, Sequence[HistoryRow]]],
        at: datetime,
    ) -> dict[int, str]:
        """Which entries the database refuses on their own, and the error's name; writes nothing.

        After a batch's commit failed on its data (not on the connection), each event's
        rows are tried in a savepoint of one transaction that is then rolled back, so the
        ingest function can dead-letter exactly the events the database will not take.
        A failure that is not about the data (the connection, the server) is raised.
        """
        bad: dict[int, str] = {}
        with self.engine.connect() as conn, conn.begin() as transaction:
            for index, (key, history) in enumerate(entries):
                try:
                    with conn.begin_nested():
                        record(conn, [key], batch_key, at)
                        record_history_in(conn, history)
                except DATA_ERRORS as error:  # e.g. CheckViolation, not the values
                    bad[index] = type(error.orig or error).__name__
            transaction.rollback()
        return bad

    def recorded_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these event ids are in the ledger, for any learner (progress checks)."""
        ids = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _QUERY_CHUNK):
                chunk = ids[start : start + _QUERY_CHUNK]
                stmt = select(PROCESSED.c.event_id).where(PROCESSED.c.event_id.in_(chunk))
                found.update(str(i) for i in conn.scalars(stmt))
        return found

    def prune(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return prune(conn, before)
