"""Sending learning events to the Kinesis stream (PutRecords), one result per event.

The partition key is the learner's hashed id, so one learner's events stay in order on
one shard without the raw id leaving the API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from learnrec.schemas import Event

MAX_RECORDS_PER_CALL = 500


def hash_user_id(user_id: str, key: bytes) -> str:
    """Keyed hash of a user id: the same everywhere ids are stored or logged."""
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class PutResult:
    """What happened to one event: accepted (with its shard and sequence) or why not."""

    accepted: bool
    sequence_number: str | None = None
    shard_id: str | None = None
    error: str | None = None


class KinesisEventSink:
    """Writes events as the JSON that the ingest function reads (DESIGN.md event schema)."""

    def __init__(self, client: Any, stream_name: str, hash_key: bytes) -> None:
        self.client = client
        self.stream_name = stream_name
        self.hash_key = hash_key

    def put(self, events: Sequence[Event]) -> list[PutResult]:
        if len(events) > MAX_RECORDS_PER_CALL:
            raise ValueError(f"at most {MAX_RECORDS_PER_CALL} events per call")
        if not events:
            return []
        records = [
            {
                "Data": json.dumps(event.model_dump(mode="json", exclude_none=True)).encode(),
                "PartitionKey": hash_user_id(event.user_id, self.hash_key),
            }
            for event in events
        ]
        try:
            response = self.client.put_records(StreamName=self.stream_name, Records=records)
        except Exception as error:  # the stream is down: every event failed, say so
            return [PutResult(False, error=f"stream unavailable: {error}")] * len(events)
        return [
            PutResult(True, r.get("SequenceNumber"), r.get("ShardId"))
            if "ErrorCode" not in r
            else PutResult(False, error=f"{r['ErrorCode']}: {r.get('ErrorMessage', '')}")
            for r in response["Records"]
        ]
