"""The ingest function's work on one Kinesis batch: validate, de-duplicate, archive, record.

Per shard of the batch (the event source mapping sends one shard per call, but nothing
breaks if it sends more):

1. decode and validate every record (:mod:`learnrec.events.records`); hash user ids,
   event ids and session ids; derive the event id of events sent without one;
2. one database round trip: which event ids are already archived, and by which batch
   (:mod:`learnrec.storage.ledger`), and which of the learners opted out;
3. dead letters for the records that are not events, in batches of ten;
4. one S3 object for the batch's new events, at a key made of the shard and the batch's
   first and last sequence numbers (:mod:`learnrec.events.archive`), so a retried batch
   overwrites its own object;
5. one transaction: the ledger rows and the learners' recent history.

Bad records are acknowledged (retrying cannot fix them; they are in the dead-letter
queue). When a dependency fails (S3, the queue, the database), every record of the shard's
batch is reported as failed, so Kinesis delivers it again; an archive object written by
the failed attempt is deleted again, so a retry with a different batch shape cannot
archive the same event twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from learnrec.config import Settings, get_settings
from learnrec.events.archive import archive_key, encode_lines
from learnrec.events.dead_letter import DeadLetter, DeadLetterError, DeadLetterQueue
from learnrec.events.records import Rejection, archived_event, parse_event
from learnrec.events.stream import StreamRecord
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.schemas import Event, EventType
from learnrec.storage import HistoryRow, IngestStore, make_engine
from learnrec.storage.schema import require_schema
from learnrec.storage.url import database_url

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
UNDECODABLE = Rejection("undecodable record: its data is not valid base64")


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
            "events_received": self.records,
            "events_written": self.written,
            "events_duplicate": self.duplicates,
            "events_dead_lettered": self.dead_lettered,
            "events_opted_out_dropped": self.opted_out,
            "events_failed": len(self.failed),
            "recommendation_impressions_total": self.impressions,
            "recommendation_clicks_total": self.clicks,
        }


@dataclass(frozen=True)
class _Parsed:
    """The batch split into events (in stream order) and dead letters."""

    events: list[tuple[Event, dict[str, Any]]]
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
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.store = store
        self.dead_letters = dead_letters
        self.hasher = hasher
        self.stream = stream
        self.dedupe_window = dedupe_window
        self.clock = clock
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
        event_ids = [event["event_id"] for _, event in parsed.events]
        letter_ids = [_letter_id(letter) for letter in parsed.letters]
        try:
            seen, opted_out = self.store.lookup(
                event_ids + letter_ids, {event["user_id"] for _, event in parsed.events}
            )
        except Exception as error:
            return self._failed(outcome, records, f"database unavailable: {error}")

        kept: list[tuple[Event, dict[str, Any]]] = []
        for parsed_event, event in parsed.events:
            batch = seen.get(event["event_id"])
            if batch is not None and batch != key:
                outcome.duplicates += 1
            elif event["user_id"] in opted_out:
                outcome.opted_out += 1
            else:
                kept.append((parsed_event, event))
        keep = [event for _, event in kept]
        outcome.duplicates += parsed.repeats
        # A dead letter in the ledger was delivered before (the ledger is written after
        # the queue accepted it); sending it again would only duplicate it.
        letters = [x for x, i in zip(parsed.letters, letter_ids, strict=True) if i not in seen]
        fresh = not any(seen.get(event["event_id"]) == key for event in keep)

        try:
            self.dead_letters.send(letters)
        except DeadLetterError as error:
            return self._failed(outcome, records, str(error))
        if keep:
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=encode_lines(keep),
                    ContentType="application/x-ndjson",
                    ContentEncoding="gzip",
                )
            except Exception as error:
                return self._failed(outcome, records, f"archive write failed: {error}")
        history = _history_rows(kept)
        try:
            outcome.history_rows = self.store.commit(
                key, [e["event_id"] for e in keep] + letter_ids, history, self.clock()
            )
        except Exception as error:
            if keep and fresh:
                self._delete_quietly(key)
            return self._failed(outcome, records, f"database write failed: {error}")
        outcome.written = len(keep)
        credited = [e["event_type"] for e in keep if e.get("recommendation_id")]
        outcome.impressions = credited.count("impression")
        outcome.clicks = credited.count("click")
        outcome.dead_lettered = len(letters)
        if keep:
            outcome.keys.append(key)
        return outcome

    def _parse(self, records: list[StreamRecord]) -> _Parsed:
        events: list[tuple[Event, dict[str, Any]]] = []
        letters: list[DeadLetter] = []
        ids: set[str] = set()
        repeats = 0
        for record in records:
            if record.data is None:
                letters.append(DeadLetter(record, UNDECODABLE, self.stream))
                continue
            result = parse_event(record.data)
            if isinstance(result, Rejection):
                letters.append(DeadLetter(record, result, self.stream))
                continue
            event = archived_event(result, self.hasher)
            if event["event_id"] in ids:
                repeats += 1
                continue
            ids.add(event["event_id"])
            events.append((result, event))
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


def _letter_id(letter: DeadLetter) -> str:
    """Dead letters are keyed by stream position: they may have no usable event id."""
    return f"dlq:{letter.position}"


def _history_rows(events: Sequence[tuple[Event, dict[str, Any]]]) -> list[HistoryRow]:
    """Impressions stay out of history: being shown an item is not having consumed it."""
    return [
        (stored["user_id"], event.content_id, event.event_type, event.ts, event.strength)
        for event, stored in events
        if event.event_type is not EventType.IMPRESSION
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
    )
