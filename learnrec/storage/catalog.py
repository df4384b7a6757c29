"""Catalog, learner profiles and recent engagement history in a relational database.

The same code runs on SQLite (the embedded default, and unit tests) and on PostgreSQL
(Aurora in AWS, a real server in functional tests), so everything here sticks to what both
do the same way: upserts are ``INSERT .. ON CONFLICT DO UPDATE`` (both dialects spell it
alike), list fields are JSON, enums are stored as their string values rather than as a
native PostgreSQL ENUM (adding an event type must not need a type migration), and
timestamps are normalised to UTC because SQLite has no time zones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    RowMapping,
    SmallInteger,
    String,
    Table,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from ..config import DEFAULT_DATABASE_URL, Settings
from ..schemas import ContentItem, EventType, Learner

# Big enough to amortise round trips, small enough to stay far below PostgreSQL's 65535
# bind-parameter limit for a multi-row INSERT (9 columns x 500 rows).
CHUNK_SIZE = 500

HistoryRow = tuple[str, str, EventType | str, datetime, float]
"""(user_id, content_id, event_type, ts, weight), as the event consumer produces them."""

_T = TypeVar("_T")

# Identifiers are opaque: compare and sort them byte-wise on PostgreSQL as SQLite does, so
# that pagination order is the same on both backends and independent of the server locale.
_ID = String(128).with_variant(String(128, collation="C"), "postgresql")
_EVENT_TYPE = String(32)
# JSONB on PostgreSQL: smaller, and indexable should we ever filter by topic in SQL.
_JSON_LIST = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite stores no offset, so without this an aware value written would come back naive
    and compare unequal. Naive input is rejected rather than guessed at: a wrong guess
    would silently shift a learner's history by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        # Naive UTC on SQLite keeps the stored text uniform, so that SQL comparisons on it
        # (the "keep the latest ts" upsert) order correctly.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Metadata for the storage tables: what the migrations (learnrec.storage.migrate) must
    produce, and what tests compare the migrated database with."""


class ContentItemRow(Base):
    """One catalog item; the columns mirror :class:`learnrec.schemas.ContentItem`."""

    __tablename__ = "learnrec_content_items"

    content_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    title: Mapped[str] = mapped_column(String(512), default="")
    topics: Mapped[list[str]] = mapped_column(_JSON_LIST, default=list)
    tags: Mapped[list[str]] = mapped_column(_JSON_LIST, default=list)
    level: Mapped[int | None] = mapped_column(SmallInteger)
    format: Mapped[str | None] = mapped_column(String(32))
    duration_minutes: Mapped[float | None] = mapped_column(Float)
    prerequisites: Mapped[list[str]] = mapped_column(_JSON_LIST, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LearnerRow(Base):
    """A learner's declared profile plus their privacy choice.

    `opted_out` lives on the profile row so that a single lookup by user id answers both
    "what do we know" and "may we use it"; a row may exist with only the opt-out set.
    """

    __tablename__ = "learnrec_learners"

    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    level: Mapped[int | None] = mapped_column(SmallInteger)
    interests: Mapped[list[str]] = mapped_column(_JSON_LIST, default=list)
    goals: Mapped[list[str]] = mapped_column(_JSON_LIST, default=list)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LearnerHistoryRow(Base):
    """A learner's most recent engagement with one item.

    One row per (learner, item) keeps the table bounded by what serving needs (filtering
    seen items, recent-history features) instead of growing with every event. There are
    no foreign keys on purpose: events may arrive before the learner has a profile or
    before an item reaches the catalog, and must not be dropped for it.
    """

    __tablename__ = "learnrec_learner_history"
    __table_args__ = (Index("ix_learnrec_learner_history_user_ts", "user_id", "ts"),)

    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    content_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    event_type: Mapped[str] = mapped_column(_EVENT_TYPE)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    weight: Mapped[float] = mapped_column(Float)


class TombstoneRow(Base):
    """A learner who must stay untracked: erased, or opted out.

    It holds the hashed id alone and outlives everything else stored about the learner:
    the ingest function drops their events, the API serves them as a new learner (erased)
    or with popular items (opted out), the retraining pipeline leaves them out, and the
    erasure sweep (:mod:`learnrec.privacy.erasure`) removes an erased learner from the
    event archive, the pipeline's data and the model bundles, then sets ``purged_at``.
    """

    __tablename__ = "learnrec_tombstones"

    user_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))  # a TombstoneReason value
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TombstoneReason(StrEnum):
    """Why a learner is untracked; erasure outranks opt-out (it is never undone)."""

    OPTED_OUT = "opted_out"
    ERASED = "erased"


ITEMS: Table = Base.metadata.tables[ContentItemRow.__tablename__]
LEARNERS: Table = Base.metadata.tables[LearnerRow.__tablename__]
HISTORY: Table = Base.metadata.tables[LearnerHistoryRow.__tablename__]
TOMBSTONES: Table = Base.metadata.tables[TombstoneRow.__tablename__]


@dataclass(frozen=True, slots=True)
class LearnerContext:
    """What serving knows of a learner: the declared profile, tombstone, recent history."""

    profile: Learner | None
    tombstone: TombstoneReason | None
    history: list[HistoryEntry]

    @property
    def opted_out(self) -> bool:
        return self.tombstone is TombstoneReason.OPTED_OUT

    @property
    def erased(self) -> bool:
        return self.tombstone is TombstoneReason.ERASED


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One (learner, item) engagement as read back; frozen so callers can cache it."""

    user_id: str
    content_id: str
    event_type: EventType
    ts: datetime
    weight: float


def make_engine(
    url: str | None = None, *, settings: Settings | None = None, **engine_kwargs: Any
) -> Engine:
    """Create the engine for `url`, else the settings' ``DATABASE_URL`` (a local SQLite
    file unless set).

    Plain ``postgresql://`` (and Heroku-style ``postgres://``) URLs are rewritten to the
    psycopg 3 driver, because SQLAlchemy would otherwise pick psycopg2, which is not
    installed. `engine_kwargs` go to :func:`sqlalchemy.create_engine` (e.g. `connect_args`).

    A database server's pool is bounded by `settings`: small in Lambda, where every
    container holds its own pool and all of them meet at RDS Proxy, and with a wait for
    a free connection shorter than a request's time budget. Without `settings`, they are
    read from the environment as it is now: an engine is made once per process, and must
    see the variables set for it.
    """
    settings = settings or Settings()
    parsed = make_url(url or settings.database_url or DEFAULT_DATABASE_URL)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine_kwargs.setdefault("pool_pre_ping", True)
    if not parsed.drivername.startswith("sqlite") and "poolclass" not in engine_kwargs:
        pool_size, max_overflow = settings.database_pool
        engine_kwargs.setdefault("pool_size", pool_size)
        engine_kwargs.setdefault("max_overflow", max_overflow)
        engine_kwargs.setdefault("pool_timeout", settings.database_pool_timeout_s)
    engine = create_engine(parsed, **engine_kwargs)
    if engine.dialect.name == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:") or (
            parsed.query.get("mode") == "memory"
        )
        event.listen(engine, "connect", _sqlite_pragmas(wal=not in_memory))
    return engine


def _sqlite_pragmas(*, wal: bool) -> Callable[[Any, Any], None]:
    """Per-connection SQLite settings, which SQLite does not persist in the file.

    Foreign keys are off by default in SQLite; WAL lets the API read while an import
    writes (it does not apply to in-memory databases).
    """

    def on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return on_connect


def _chunks(values: Iterable[_T], size: int = CHUNK_SIZE) -> Iterator[list[_T]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


# Given a column name, the SQL expression for the value that the INSERT proposed.
_Excluded = Callable[[str], ColumnElement[Any]]
_SetBuilder = Callable[[_Excluded], dict[str, ColumnElement[Any]]]


def _upsert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], set_: _SetBuilder
) -> None:
    """INSERT `rows`, updating on primary-key conflict as `set_` says.

    `rows` must not repeat a key: PostgreSQL refuses to update one row twice in a
    statement, so callers merge duplicates first.
    """
    if not rows:
        return
    index_elements = [column.name for column in table.primary_key.columns]
    if conn.dialect.name == "postgresql":
        pg_stmt = pg_insert(table)
        pg_stmt = pg_stmt.on_conflict_do_update(
            index_elements=index_elements, set_=set_(lambda name: pg_stmt.excluded[name])
        )
        conn.execute(pg_stmt, list(rows))
    elif conn.dialect.name == "sqlite":
        lite_stmt = sqlite_insert(table)
        lite_stmt = lite_stmt.on_conflict_do_update(
            index_elements=index_elements, set_=set_(lambda name: lite_stmt.excluded[name])
        )
        conn.execute(lite_stmt, list(rows))
    else:  # pragma: no cover - CatalogStore refuses other dialects up front
        raise NotImplementedError(conn.dialect.name)


def _replace_all(table: Table, keep: Iterable[str] = ()) -> _SetBuilder:
    """On conflict, take every non-key column from the new row, except those in `keep`."""
    columns = [c.name for c in table.columns if not c.primary_key and c.name not in keep]
    return lambda excluded: {name: excluded(name) for name in columns}


def _merge_history(excluded: _Excluded) -> dict[str, ColumnElement[Any]]:
    """Keep the newest engagement and the strongest weight, whatever order rows arrive in.

    That makes replaying a batch (at-least-once delivery from Kinesis) a no-op, and lets
    an older but stronger event (a completion) still count after a newer impression.
    """
    newer = excluded("ts") > HISTORY.c.ts
    return {
        "ts": case((newer, excluded("ts")), else_=HISTORY.c.ts),
        "event_type": case((newer, excluded("event_type")), else_=HISTORY.c.event_type),
        "weight": case(
            (excluded("weight") > HISTORY.c.weight, excluded("weight")), else_=HISTORY.c.weight
        ),
    }


def _item_values(item: ContentItem, now: datetime) -> dict[str, Any]:
    values = item.model_dump(mode="json")
    values["updated_at"] = now
    return values


def _item_from_row(row: ContentItemRow) -> ContentItem:
    return ContentItem.model_validate(
        {name: getattr(row, name) for name in ContentItem.model_fields}
    )


def _learner_from_row(row: LearnerRow) -> Learner:
    return Learner.model_validate({name: getattr(row, name) for name in Learner.model_fields})


def _history_values(row: HistoryRow) -> dict[str, Any]:
    user_id, content_id, event_type, ts, weight = row
    if not math.isfinite(weight):
        raise ValueError(f"weight must be finite, got {weight!r} for ({user_id}, {content_id})")
    if ts.tzinfo is None:
        raise ValueError(f"ts must be timezone-aware for ({user_id}, {content_id})")
    return {
        "user_id": user_id,
        "content_id": content_id,
        "event_type": EventType(event_type).value,
        "ts": ts.astimezone(UTC),
        "weight": float(weight),
    }


def _merge_history_chunk(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply `_merge_history` in Python to rows that share a key within one statement."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["user_id"], row["content_id"])
        seen = merged.get(key)
        if seen is None:
            merged[key] = row
            continue
        newest = row if row["ts"] > seen["ts"] else seen
        merged[key] = {**newest, "weight": max(row["weight"], seen["weight"])}
    return list(merged.values())


def history_entry(row: RowMapping) -> HistoryEntry:
    """A history row (a result mapping) as serving reads it."""
    return HistoryEntry(
        user_id=row["user_id"],
        content_id=row["content_id"],
        event_type=EventType(row["event_type"]),
        ts=row["ts"],
        weight=row["weight"],
    )


def learner_context_of(
    profile_row: RowMapping | None, reason: str | None, history: list[HistoryEntry]
) -> LearnerContext:
    """What serving knows of a learner from their rows: the profile row (with the previous
    release's opt-out flag, honoured when there is no tombstone) and the tombstone's reason."""
    tombstone = None if reason is None else TombstoneReason(reason)
    profile = None
    if profile_row is not None:
        if profile_row["opted_out"] and tombstone is None:
            tombstone = TombstoneReason.OPTED_OUT
        profile = Learner.model_validate({k: profile_row[k] for k in Learner.model_fields})
    return LearnerContext(profile, tombstone, history)


def untracked_among(conn: Connection, user_ids: Iterable[str]) -> set[str]:
    """The learners among ``user_ids`` whose events must not be recorded.

    A tombstone (erased or opted out) or the profile's opt-out flag, which the previous
    release still writes alone during a canary or after a rollback.
    """
    found: set[str] = set()
    for chunk in _chunks(dict.fromkeys(user_ids)):
        flagged = select(LEARNERS.c.user_id).where(
            LEARNERS.c.user_id.in_(chunk), LEARNERS.c.opted_out.is_(True)
        )
        tombstoned = select(TOMBSTONES.c.user_id).where(TOMBSTONES.c.user_id.in_(chunk))
        found.update(str(user_id) for user_id in conn.scalars(flagged.union(tombstoned)))
    return found


def write_tombstone(conn: Connection, user_id: str, reason: TombstoneReason) -> None:
    """Record that a learner stays untracked; an erasure is never downgraded to opt-out."""
    row = {"user_id": user_id, "reason": reason.value, "requested_at": datetime.now(UTC)}
    if reason is TombstoneReason.ERASED:
        # A new erasure request restarts the clock: the sweep runs again for it.
        _upsert(
            conn,
            TOMBSTONES,
            [{**row, "purged_at": None}],
            lambda excluded: {
                "reason": excluded("reason"),
                "requested_at": excluded("requested_at"),
                "purged_at": excluded("purged_at"),
            },
        )
    else:  # an existing tombstone (erased, or opted out earlier) stays as it is
        _upsert(
            conn,
            TOMBSTONES,
            [{**row, "purged_at": None}],
            lambda _: {"reason": TOMBSTONES.c.reason},
        )


def record_history_in(conn: Connection, rows: Iterable[HistoryRow]) -> int:
    """:meth:`CatalogStore.record_history` inside a caller's transaction."""
    written = 0
    for chunk in _chunks(rows):
        values = [_history_values(row) for row in chunk]
        untracked = untracked_among(conn, (v["user_id"] for v in values))
        merged = _merge_history_chunk(v for v in values if v["user_id"] not in untracked)
        _upsert(conn, HISTORY, merged, _merge_history)
        written += len(merged)
    return written


class CatalogStore:
    """Catalog items, learner profiles and learner history behind one engine.

    Every method runs in its own short transaction, so a store can be shared by the
    request handlers of one process; writes are idempotent so retries are safe.
    """

    SUPPORTED_DIALECTS = frozenset({"sqlite", "postgresql"})

    def __init__(self, engine: Engine) -> None:
        # Fail at start-up, not at the first write, on a backend whose upsert we can't do.
        if engine.dialect.name not in self.SUPPORTED_DIALECTS:
            raise ValueError(
                f"unsupported database dialect {engine.dialect.name!r}; "
                f"use one of {sorted(self.SUPPORTED_DIALECTS)}"
            )
        self.engine = engine

    # -- catalog -------------------------------------------------------------------------

    def upsert_items(
        self, items: Iterable[ContentItem], then: Callable[[], None] | None = None
    ) -> int:
        """Insert or fully replace items; return how many rows were written.

        An item repeated within one chunk is written once, its last version winning.
        ``then`` runs inside the transaction, after the rows are written and before the
        commit; if it raises, nothing is written. The API indexes the items there, so a
        catalog update reaches the database and the vector index together or not at all.
        """
        written = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(items):
                now = datetime.now(UTC)
                rows = list({item.content_id: _item_values(item, now) for item in chunk}.values())
                _upsert(conn, ITEMS, rows, _replace_all(ITEMS))
                written += len(rows)
            if then is not None:
                then()
        return written

    def get_item(self, content_id: str) -> ContentItem | None:
        with Session(self.engine) as session:
            row = session.get(ContentItemRow, content_id)
            return None if row is None else _item_from_row(row)

    def list_items(self, limit: int | None = None, offset: int = 0) -> list[ContentItem]:
        """Items ordered by `content_id`, so that pages are stable across calls."""
        stmt = select(ContentItemRow).order_by(ContentItemRow.content_id)
        stmt = stmt.offset(offset).limit(limit)
        with Session(self.engine) as session:
            return [_item_from_row(row) for row in session.scalars(stmt)]

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(ITEMS)) or 0)

    def delete_item(self, content_id: str) -> bool:
        """Remove an item from the catalog; learners' history of it is kept as a record."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(ITEMS).where(ITEMS.c.content_id == content_id))
            return result.rowcount > 0

    # -- learners ------------------------------------------------------------------------

    def upsert_learners(self, learners: Iterable[Learner]) -> int:
        """Insert or replace profiles; return how many rows were written.

        A learner's opt-out is deliberately not touched: a profile update from another
        system must never silently opt a learner back in.
        """
        written = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(learners):
                now = datetime.now(UTC)
                by_id = {
                    learner.user_id: {
                        **learner.model_dump(mode="json"),
                        "opted_out": False,
                        "updated_at": now,
                    }
                    for learner in chunk
                }
                rows = list(by_id.values())
                _upsert(conn, LEARNERS, rows, _replace_all(LEARNERS, keep=("opted_out",)))
                written += len(rows)
        return written

    def get_learner(self, user_id: str) -> Learner | None:
        with Session(self.engine) as session:
            row = session.get(LearnerRow, user_id)
            return None if row is None else _learner_from_row(row)

    def list_learners(self, limit: int | None = None, offset: int = 0) -> list[Learner]:
        """Learners ordered by `user_id`, so that pages are stable across calls."""
        stmt = select(LearnerRow).order_by(LearnerRow.user_id).offset(offset).limit(limit)
        with Session(self.engine) as session:
            return [_learner_from_row(row) for row in session.scalars(stmt)]

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        """Record a learner's choice: a tombstone, and the profile's flag.

        The flag is what the previous release reads, so the choice holds during a canary
        or after a rollback; it creates a bare profile row when there is none. Opting back
        in removes an opt-out tombstone, never an erasure's, and an erased learner gets no
        profile row back.
        """
        row: dict[str, Any] = {
            "user_id": user_id,
            "level": None,
            "interests": [],
            "goals": [],
            "opted_out": opted_out,
            "updated_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            erased = select(TOMBSTONES.c.user_id).where(
                TOMBSTONES.c.user_id == user_id,
                TOMBSTONES.c.reason == TombstoneReason.ERASED.value,
            )
            if conn.scalar(erased) is not None:  # erased: untracked already, store nothing
                return
            _upsert(
                conn,
                LEARNERS,
                [row],
                lambda excluded: {
                    "opted_out": excluded("opted_out"),
                    "updated_at": excluded("updated_at"),
                },
            )
            if opted_out:
                write_tombstone(conn, user_id, TombstoneReason.OPTED_OUT)
            else:
                conn.execute(
                    delete(TOMBSTONES).where(
                        TOMBSTONES.c.user_id == user_id,
                        TOMBSTONES.c.reason == TombstoneReason.OPTED_OUT.value,
                    )
                )

    def is_opted_out(self, user_id: str) -> bool:
        """Whether the learner is untracked (opted out or erased); unknown learners are not."""
        return user_id in self.untracked_among([user_id])

    def tombstone(self, user_id: str) -> TombstoneReason | None:
        """Why the learner is untracked, if they are."""
        with self.engine.connect() as conn:
            reason = conn.scalar(select(TOMBSTONES.c.reason).where(TOMBSTONES.c.user_id == user_id))
        return None if reason is None else TombstoneReason(reason)

    def learner_context(self, user_id: str, history_limit: int = 200) -> LearnerContext:
        """Profile, tombstone and recent history over one connection.

        The recommendation path needs all three on every request; three sessions cost
        measurably more than one.
        """
        profile_stmt = select(LEARNERS).where(LEARNERS.c.user_id == user_id)
        tombstone_stmt = select(TOMBSTONES.c.reason).where(TOMBSTONES.c.user_id == user_id)
        history_stmt = (
            select(HISTORY)
            .where(HISTORY.c.user_id == user_id)
            .order_by(HISTORY.c.ts.desc(), HISTORY.c.content_id)
            .limit(history_limit)
        )
        with self.engine.connect() as conn:
            profile_row = conn.execute(profile_stmt).mappings().first()
            reason = conn.scalar(tombstone_stmt)
            history_rows = conn.execute(history_stmt).mappings().all()
        return learner_context_of(profile_row, reason, [history_entry(r) for r in history_rows])

    # -- history -------------------------------------------------------------------------

    def record_history(self, rows: Iterable[HistoryRow]) -> int:
        """Merge engagements into history; return how many (learner, item) rows were written.

        Idempotent: recording the same rows again changes nothing and returns the same
        count. Per (learner, item) the latest `ts` (with its event type) and the largest
        weight win. Rows of learners who opted out are dropped: their choice covers
        events still in flight when they made it.
        """
        with self.engine.begin() as conn:
            return record_history_in(conn, rows)

    def untracked_among(self, user_ids: Iterable[str]) -> set[str]:
        """Which of ``user_ids`` are untracked, in one query per chunk (not one per learner)."""
        with self.engine.connect() as conn:
            return untracked_among(conn, user_ids)

    def history(self, user_id: str, limit: int = 200) -> list[HistoryEntry]:
        """A learner's engagements, most recent first (ties broken by item for stability)."""
        stmt = (
            select(LearnerHistoryRow)
            .where(LearnerHistoryRow.user_id == user_id)
            .order_by(LearnerHistoryRow.ts.desc(), LearnerHistoryRow.content_id)
            .limit(limit)
        )
        with Session(self.engine) as session:
            return [
                HistoryEntry(
                    user_id=row.user_id,
                    content_id=row.content_id,
                    event_type=EventType(row.event_type),
                    ts=row.ts,
                    weight=row.weight,
                )
                for row in session.scalars(stmt)
            ]

    def trending(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        """Items engaged with by the most learners since ``since``, with those counts."""
        learners = func.count(LearnerHistoryRow.user_id).label("learners")
        stmt = (
            select(LearnerHistoryRow.content_id, learners)
            .where(LearnerHistoryRow.ts >= since, LearnerHistoryRow.weight > 0)
            .group_by(LearnerHistoryRow.content_id)
            .order_by(learners.desc(), LearnerHistoryRow.content_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(str(cid), int(n)) for cid, n in conn.execute(stmt)]
