"""Sending learning events to the Kinesis stream (PutRecords), one result per event.

:class:`KinesisProducer` is the helper for producers that write to the stream directly
(and for `POST /events`, through :class:`KinesisEventSink`): it packs records into
PutRecords calls within Kinesis's limits, retries only the records Kinesis refused, with
exponential backoff and jitter, and reports every record it could not send, so nothing
is lost without the caller knowing.

The partition key is the learner's hashed id when the hash key is known, so one
learner's events stay in order on one shard without the raw id leaving the producer;
given the key, an :class:`Event` is sent in its archived form, with every id hashed
(:func:`learnrec.events.records.stream_record`), so the stream holds no raw id.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from learnrec.events.batching import calls
from learnrec.events.records import archived_event, stream_record
from learnrec.identity import UserIdHasher
from learnrec.schemas import Event

__all__ = [
    "MAX_RECORDS_PER_CALL",
    "KinesisEventSink",
    "KinesisProducer",
    "PutResult",
    "SendReport",
]

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data plus partition key, Kinesis's limit


@dataclass(frozen=True)
class PutResult:
    """What happened to one event: accepted (with its shard and sequence) or why not."""

    accepted: bool
    sequence_number: str | None = None
    shard_id: str | None = None
    error: str | None = None


@dataclass
class SendReport:
    """Per input record, its result; plus how much work sending took."""

    results: list[PutResult]
    calls: int = 0
    retried: int = 0

    @property
    def sent(self) -> int:
        return sum(r.accepted for r in self.results)

    @property
    def failed(self) -> list[tuple[int, str]]:
        """(index in the input, last error) of every record that was not sent."""
        return [(i, r.error or "") for i, r in enumerate(self.results) if not r.accepted]


Payload = Event | dict[str, Any] | bytes | str


def _data(payload: Payload, hash_id: Callable[[str], str] | None = None) -> bytes:
    if isinstance(payload, Event):
        if hash_id is not None:
            return stream_record(archived_event(payload, hash_id))
        return json.dumps(payload.model_dump(mode="json", exclude_none=True)).encode()
    if isinstance(payload, dict):
        return json.dumps(payload, separators=(",", ":")).encode()
    return payload.encode() if isinstance(payload, str) else payload


@dataclass
class KinesisProducer:
    """PutRecords with batching, retries of the refused records only, and a report.

    ``partition_key`` maps a record's payload to its key; by default the keyed hash of
    its ``user_id`` when ``hash_key`` is given, else a digest of the data (records then
    spread evenly; the history merge does not depend on their order).
    """

    client: Any
    stream_name: str
    hash_key: bytes | None = None
    max_attempts: int = 5
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    partition_key: Callable[[Payload, bytes], str] | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._hasher = UserIdHasher(self.hash_key) if self.hash_key else None

    def send(self, payloads: Sequence[Payload]) -> SendReport:
        records: list[dict[str, Any]] = []
        for payload in payloads:
            data = _data(payload, self._hasher)
            records.append({"Data": data, "PartitionKey": self._key(payload, data)})
        results: list[PutResult | None] = [None] * len(records)
        report = SendReport(results=[])
        pending: list[int] = []
        for index, record in enumerate(records):
            size = len(record["Data"]) + len(record["PartitionKey"].encode())
            if size > MAX_RECORD_BYTES:
                results[index] = PutResult(False, error=f"record is {size} bytes (max 1 MiB)")
            else:
                pending.append(index)
        for attempt in range(self.max_attempts):
            if not pending:
                break
            if attempt:
                report.retried += len(pending)
                self.sleep(self._delay(attempt))
            refused: list[int] = []
            for call in self._calls(pending, records):
                report.calls += 1
                refused += self._put(call, records, results)
            pending = refused
        report.results = [r or PutResult(False, error="not sent") for r in results]
        return report

    def _key(self, payload: Payload, data: bytes) -> str:
        if self.partition_key is not None:
            return self.partition_key(payload, data)
        user_id = payload.user_id if isinstance(payload, Event) else None
        if isinstance(payload, dict) and isinstance(payload.get("user_id"), str):
            user_id = payload["user_id"]
        if user_id and self._hasher is not None:
            return self._hasher(user_id)
        return hashlib.sha256(data).hexdigest()[:32]

    def _delay(self, attempt: int) -> float:
        """Full jitter: spreads retries of many producers hitting the same hot shard."""
        return self.rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))

    @staticmethod
    def _calls(indices: list[int], records: list[dict[str, Any]]) -> list[list[int]]:
        def size(index: int) -> int:
            return len(records[index]["Data"]) + len(records[index]["PartitionKey"].encode())

        return calls(indices, size, MAX_RECORDS_PER_CALL, MAX_BYTES_PER_CALL)

    def _put(
        self, call: list[int], records: list[dict[str, Any]], results: list[PutResult | None]
    ) -> list[int]:
        """One PutRecords call; returns the indices Kinesis refused (to retry)."""
        try:
            response = self.client.put_records(
                StreamName=self.stream_name, Records=[records[i] for i in call]
            )
        except Exception as error:  # throttled or unreachable: all of them, retry
            for index in call:
                results[index] = PutResult(False, error=f"stream unavailable: {error}")
            return call
        refused = []
        for index, entry in zip(call, response["Records"], strict=True):
            if "ErrorCode" in entry:
                message = f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}"
                results[index] = PutResult(False, error=message)
                refused.append(index)
            else:
                results[index] = PutResult(True, entry.get("SequenceNumber"), entry.get("ShardId"))
        return refused


class KinesisEventSink:
    """Writes events as the ingest function reads them, every id hashed (docs/EVENTS.md).

    Used by `POST /events`: a request waits for its events, so retries are few and short.
    """

    def __init__(
        self, client: Any, stream_name: str, hash_key: bytes, max_attempts: int = 3
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.hash_key = hash_key
        self.producer = KinesisProducer(
            client,
            stream_name,
            hash_key,
            max_attempts=max_attempts,
            base_delay_s=0.05,
            max_delay_s=0.2,
        )

    def put(self, events: Sequence[Event]) -> list[PutResult]:
        if len(events) > MAX_RECORDS_PER_CALL:
            raise ValueError(f"at most {MAX_RECORDS_PER_CALL} events per call")
        if not events:
            return []
        return self.producer.send(events).results
