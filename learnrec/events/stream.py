"""Kinesis records as the ingest function sees them, to and from Lambda's event shape.

The Lambda event source mapping hands the function ``{"Records": [...]}`` with each
record's data base64-encoded; the local poller builds exactly that shape from
GetRecords, so the handler cannot tell the two apart and runs locally as in AWS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from learnrec.stages import LOCAL_ACCOUNT, LOCAL_REGION


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record: where it sits in the stream, when it arrived, its bytes.

    ``data`` is None when the record's base64 could not be decoded; such a record is
    still accounted for (it goes to the dead-letter queue), never skipped.
    """

    shard_id: str
    sequence_number: str
    arrival: datetime
    partition_key: str
    data: bytes | None
    raw_data: str = ""

    @property
    def position(self) -> str:
        """Shard and sequence number: unique in the stream, the record's identity."""
        return f"{self.shard_id}:{self.sequence_number}"


def records_from_event(event: Mapping[str, Any]) -> list[StreamRecord]:
    """The records of a Lambda Kinesis event, in delivery order."""
    return [_record(r) for r in event.get("Records") or []]


def _record(record: Mapping[str, Any]) -> StreamRecord:
    kinesis = record["kinesis"]
    shard_id = str(record.get("eventID", "")).partition(":")[0] or "shard-unknown"
    raw = str(kinesis.get("data", ""))
    try:
        data: bytes | None = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        data = None
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=str(kinesis["sequenceNumber"]),
        arrival=datetime.fromtimestamp(float(kinesis["approximateArrivalTimestamp"]), UTC),
        partition_key=str(kinesis.get("partitionKey", "")),
        data=data,
        raw_data=raw if data is None else "",
    )


def stream_arn(stream_name: str, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
    return f"arn:aws:kinesis:{region}:{account}:stream/{stream_name}"


def lambda_record(
    shard_id: str,
    record: Mapping[str, Any],
    stream_name: str,
    region: str = LOCAL_REGION,
    account: str = LOCAL_ACCOUNT,
) -> dict[str, Any]:
    """A GetRecords record as the Lambda event source mapping delivers it."""
    arrival = record["ApproximateArrivalTimestamp"]
    if isinstance(arrival, datetime):
        arrival_s = (arrival if arrival.tzinfo else arrival.replace(tzinfo=UTC)).timestamp()
    else:
        arrival_s = float(arrival)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": base64.b64encode(record["Data"]).decode(),
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{account}:role/learnrec-ingest",
        "awsRegion": region,
        "eventSourceARN": stream_arn(stream_name, region, account),
    }


def lambda_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def positions(records: Sequence[StreamRecord]) -> list[str]:
    return [r.position for r in records]
