"""The ingest function's work on one Kinesis batch: validate, de-duplicate, archive, record.

Per shard of the batch (the event source mapping sends one shard per call, but nothing
breaks if it sends more):

1. decode and validate every record (:mod:`learnrec.events.records`), timestamps within
   [now - retention, now + skew]; hash user ids, event ids and session ids; derive the
   event id of events sent without one;
2. one database round trip: which (learner, event id) pairs are already archived, and
   by which batch (:mod:`learnrec.storage.ledger`), and which of the learners opted out;
3. dead letters for the records that are not events, in batches of ten;
4. one S3 object for the batch's new events, at a key made of the shard and the batch's
   first and last sequence numbers (:mod:`learnrec.events.archive`), so a retried batch
   overwrites its own object;
5. one transaction: the ledger rows and the learners' recent history.

Bad records are acknowledged (retrying cannot fix them; they are in the dead-letter
queue). So is a record that passed validation but fails anyway: an unexpected error
while preparing it, or a database that refuses its rows (a data error, found by trying
each event alone, see :meth:`IngestStore.refused`) is dead-lettered alone, with its
reason, and the rest of the batch is stored. Only when a dependency fails (S3, the queue,
the database's connection) is every record of the shard's batch reported as failed, so
Kinesis delivers it again; an archive object written by the failed attempt is deleted
again, so a retry with a different batch shape cannot archive the same event twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from learnrec import metric_names
from learnrec.config import Settings, get_settings
from learnrec.events.archive import archive_key, compress_lines, encode_line
from learnrec.events.dead_letter import DeadLetter, DeadLetterError, DeadLetterQueue
from learnrec.events.records import Rejection, read_stream_record
from learnrec.events.stream import StreamRecord
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.schemas import DEFAULT_EVENT_RETENTION, Event, EventType, EventWindow, FieldError
from learnrec.storage import HistoryRow, IngestStore, make_engine
from learnrec.storage.ledger import DATA_ERRORS, STREAM_POSITION, LedgerKey
from learnrec.storage.schema import require_schema
from learnrec.storage.url import database_url

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
UNDECODABLE = Rejection("undecodable record: its data is not valid base64")


def _unprocessable(stage: str, error: BaseException | str) -> Rejection:
    """The reason for an event that passed validation and failed anyway: the error's
    type only, since its message may quote the payload (and the raw user id)."""
    name = error if isinstance(error, str) else type(error).__name__
    return Rejection(
        "unprocessable event", (FieldError(field="(event)", message=f"{stage}: {name}"),)
    )


@dataclass
class BatchOutcome:
    """What one call did: counts for metrics, and the records Kinesis must redeliver."""

    records: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    opted_out: int = 0
    history_rows: int = 0
    # Impressions and clicks that echo a recommendation_id: the dashboard's CTR.
    impressions: int = 0
    clicks: int = 0
    failed: list[str] = field(default_factory=list)  # sequence numbers
    errors: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def add(self, other: BatchOutcome) -> None:
        for name in (
            "records",
            "written",
            "duplicates",
            "dead_lettered",
            "opted_out",
            "impressions",
            "clicks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.history_rows += other.history_rows
        self.failed += other.failed
        self.errors += other.errors
        self.keys += other.keys

    def metrics(self) -> dict[str, int]:
        return {
            metric_names.EVENTS_RECEIVED: self.records,
            metric_names.EVENTS_WRITTEN: self.written,
            metric_names.EVENTS_DUPLICATE: self.duplicates,
            metric_names.EVENTS_DEAD_LETTERED: self.dead_lettered,
            metric_names.EVENTS_OPTED_OUT_DROPPED: self.opted_out,
            metric_names.EVENTS_FAILED: len(self.failed),
            metric_names.IMPRESSIONS: self.impressions,
            metric_names.CLICKS: self.clicks,
        }


@dataclass(frozen=True)
class _Prepared:
    """One valid event: as validated, as it will be archived, and the record it came in."""

    event: Event
    stored: dict[str, Any]
    line: bytes  # ``stored`` encoded for the archive object, once
    record: StreamRecord


@dataclass(frozen=True)
class _Parsed:
    """The batch split into events (in stream order) and dead letters."""

    events: list[_Prepared]
    letters: list[DeadLetter]
    repeats: int  # events whose id appeared earlier in the same batch


class Ingestor:
    """Turns Kinesis batches into archive objects, history rows and dead letters."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        store: IngestStore,
        dead_letters: DeadLetterQueue,
        hasher: UserIdHasher,
        stream: str = "",
        dedupe_window: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention: timedelta = DEFAULT_EVENT_RETENTION,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.store = store
        self.dead_letters = dead_letters
        self.hasher = hasher
        self.stream = stream
        self.dedupe_window = dedupe_window
        self.clock = clock
        self.retention = retention
        self._pruned_at: float | None = None

    def process(self, records: Sequence[StreamRecord]) -> BatchOutcome:
        total = BatchOutcome()
        by_shard: dict[str, list[StreamRecord]] = {}
        for record in records:
            by_shard.setdefault(record.shard_id, []).append(record)
        for shard_records in by_shard.values():
            total.add(self._process_shard(shard_records))
        self._maybe_prune()
        return total

    # -- one shard's batch ------------------------------------------------------------

    def _process_shard(self, records: list[StreamRecord]) -> BatchOutcome:
        outcome = BatchOutcome(records=len(records))
        first, last = records[0], records[-1]
        key = archive_key(
            first.arrival, first.shard_id, first.sequence_number, last.sequence_number
        )
        parsed = self._parse(records)
        try:
            seen, opted_out = self.store.lookup(
                [_event_key(p.stored) for p in parsed.events] + [_position_key(r) for r in records],
                {p.stored["user_id"] for p in parsed.events},
            )
        except Exception as error:
            return self._failed(outcome, records, f"database unavailable: {error}")

        kept: list[_Prepared] = []
        for prepared in parsed.events:
            batch = seen.get(_event_key(prepared.stored))
            if _position_key(prepared.record) in seen:
                continue  # the database refused it before: it is in the dead-letter queue
            if batch is not None and batch != key:
                outcome.duplicates += 1
            elif prepared.stored["user_id"] in opted_out:
                outcome.opted_out += 1
            else:
                kept.append(prepared)
        outcome.duplicates += parsed.repeats
        # A dead letter in the ledger was delivered before (the ledger is written after
        # the queue accepted it); sending it again would only duplicate it.
        letters = [x for x in parsed.letters if _position_key(x.record) not in seen]
        try:
            self.dead_letters.send(letters)
        except DeadLetterError as error:
            return self._failed(outcome, records, str(error))
        return self._archive_and_record(outcome, records, key, kept, letters, seen)

    def _archive_and_record(
        self,
        outcome: BatchOutcome,
        records: list[StreamRecord],
        key: str,
        kept: list[_Prepared],
        letters: list[DeadLetter],
        seen: dict[LedgerKey, str],
    ) -> BatchOutcome:
        """Write the object, then the ledger and history; set aside what the database refuses.

        A commit that fails on the rows' data (not on the connection) is answered by
        finding the events the database refuses alone, dead-lettering each with its
        reason, writing the object again without them, and committing the rest: one bad
        event must not hold back, or forever fail, the batch around it.
        """
        fresh = not any(seen.get(_event_key(p.stored)) == key for p in kept)
        now = self.clock()
        for attempt in range(2):
            if kept:
                try:
                    self.s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=compress_lines(p.line for p in kept),
                        ContentType="application/x-ndjson",
                        ContentEncoding="gzip",
                    )
                except Exception as error:
                    return self._failed(outcome, records, f"archive write failed: {error}")
            elif attempt:  # every event was refused: the first attempt's object goes
                self._delete_quietly(key)
            ledger = [_event_key(p.stored) for p in kept]
            ledger += [_position_key(x.record) for x in letters]
            try:
                outcome.history_rows = self.store.commit(key, ledger, _history_rows(kept), now)
                break
            except Exception as error:
                failure = error
            refused: dict[int, str] = {}
            if attempt == 0 and isinstance(failure, DATA_ERRORS) and kept:
                try:
                    refused = self.store.refused(
                        key, [(_event_key(p.stored), _history_rows([p])) for p in kept], now
                    )
                except Exception as error:
                    failure = error
            if not refused:
                if kept and fresh:
                    self._delete_quietly(key)
                return self._failed(outcome, records, f"database write failed: {failure}")
            logger.warning("the database refused %d events; dead-lettering them", len(refused))
            bad = [
                DeadLetter(
                    kept[i].record, _unprocessable("the database refused it", name), self.stream
                )
                for i, name in refused.items()
            ]
            try:
                self.dead_letters.send(bad)
            except DeadLetterError as error:
                if fresh:
                    self._delete_quietly(key)
                return self._failed(outcome, records, str(error))
            letters = letters + bad
            kept = [p for i, p in enumerate(kept) if i not in refused]
        keep = [p.stored for p in kept]
        outcome.written = len(keep)
        credited = [e["event_type"] for e in keep if e.get("recommendation_id")]
        outcome.impressions = credited.count("impression")
        outcome.clicks = credited.count("click")
        outcome.dead_lettered = len(letters)
        if keep:
            outcome.keys.append(key)
        return outcome

    def _parse(self, records: list[StreamRecord]) -> _Parsed:
        window = EventWindow(retention=self.retention, now=self.clock())
        events: list[_Prepared] = []
        letters: list[DeadLetter] = []
        ids: set[LedgerKey] = set()
        repeats = 0
        for record in records:
            if record.data is None:
                letters.append(DeadLetter(record, UNDECODABLE, self.stream))
                continue
            try:
                result = read_stream_record(record.data, self.hasher, window)
                if isinstance(result, Rejection):
                    letters.append(DeadLetter(record, result, self.stream))
                    continue
                event, stored = result
                line = encode_line(stored)  # fails here, for this event alone
            except Exception as error:  # a bug, not bad input: this record alone fails
                logger.exception("an event that passed validation could not be prepared")
                letters.append(DeadLetter(record, _unprocessable("preparing", error), self.stream))
                continue
            if _event_key(stored) in ids:
                repeats += 1
                continue
            ids.add(_event_key(stored))
            events.append(_Prepared(event, stored, line, record))
        return _Parsed(events, letters, repeats)

    def _failed(
        self, outcome: BatchOutcome, records: Sequence[StreamRecord], error: str
    ) -> BatchOutcome:
        logger.error("batch of %d records failed: %s", len(records), error)
        return BatchOutcome(
            records=outcome.records,
            failed=[r.sequence_number for r in records],
            errors=[error],
        )

    def _delete_quietly(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except Exception:  # the retry overwrites it when its shape is the same
            logger.exception("could not delete the archive object of a failed batch")

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL_S:
            return
        self._pruned_at = now
        try:
            self.store.prune(self.clock() - self.dedupe_window)
        except Exception:  # pruning is housekeeping; the next container tries again
            logger.exception("could not prune the ingest ledger")


def _event_key(stored: dict[str, Any]) -> LedgerKey:
    """De-duplication is per learner: event ids come from clients, who may reuse them."""
    return (str(stored["user_id"]), str(stored["event_id"]))


def _position_key(record: StreamRecord) -> LedgerKey:
    """Dead letters are keyed by stream position: they may have no usable event id."""
    return (STREAM_POSITION, f"dlq:{record.position}")


def _history_rows(events: Sequence[_Prepared]) -> list[HistoryRow]:
    """Impressions stay out of history: being shown an item is not having consumed it."""
    return [
        (p.stored["user_id"], p.event.content_id, p.event.event_type, p.event.ts, p.event.strength)
        for p in events
        if p.event.event_type is not EventType.IMPRESSION
    ]


def summarise(outcome: BatchOutcome) -> dict[str, Any]:
    """The outcome as one log line's fields."""
    return {**outcome.metrics(), "keys": outcome.keys, "errors": outcome.errors}


def ingestor_from_settings(settings: Settings | None = None, session: Any = None) -> Ingestor:
    """The ingest function's dependencies, from ``DATABASE_URL``, ``S3_BUCKET``,
    ``DEAD_LETTER_QUEUE_URL`` and the user id hash key (explicit settings win)."""
    import boto3

    settings = settings or get_settings()
    if not settings.s3_bucket:
        raise ValueError("set S3_BUCKET: the ingest function archives events there")
    if not settings.dead_letter_queue_url:
        raise ValueError("set DEAD_LETTER_QUEUE_URL: bad records must go somewhere")
    session = session or boto3.Session()
    s3 = session.client("s3")
    bucket = settings.s3_bucket
    url = database_url(settings, session.client("secretsmanager"))
    store = IngestStore(make_engine(url, settings=settings))
    # The deploy-time migration owns the schema; a cold start only checks it is there.
    require_schema(store.engine)

    hasher = UserIdHasher(user_id_hash_key(settings, session.client("secretsmanager")))

    def spill(key: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=data)

    return Ingestor(
        s3=s3,
        bucket=bucket,
        store=store,
        dead_letters=DeadLetterQueue(
            session.client("sqs"), settings.dead_letter_queue_url, hasher, spill=spill
        ),
        hasher=hasher,
        stream=settings.events_stream or "",
        dedupe_window=timedelta(days=settings.dedupe_window_days),
        retention=timedelta(days=settings.event_retention_days),
    )
