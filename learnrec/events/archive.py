"""The raw-event archive in S3: its key layout, and reading a time window back.

The ingest function writes each Kinesis batch's valid events as one gzipped JSON-lines
object per shard and hour:

``events/dt=YYYY-MM-DD/hour=HH/<shard id>/<first sequence>-<last sequence>.jsonl.gz``

The date and hour are those of the batch's first record's arrival in the stream, so the
key depends only on the batch, and a retried batch overwrites its object instead of
adding a second copy. Each line is one event as the schema in :mod:`learnrec.schemas`
dumps it, with ``event_id`` always set and ``user_id`` already hashed. The retraining
pipeline reads a window back with :func:`read_events`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from learnrec.stages import EVENTS_PREFIX


def archive_key(arrival: datetime, shard_id: str, first_sequence: str, last_sequence: str) -> str:
    arrival = arrival.astimezone(UTC)
    return (
        f"{EVENTS_PREFIX}dt={arrival:%Y-%m-%d}/hour={arrival:%H}/"
        f"{shard_id}/{first_sequence}-{last_sequence}.jsonl.gz"
    )


def encode_line(event: dict[str, Any]) -> bytes:
    """One event as its line in an archive object: compact JSON, UTF-8, newline.

    Raises for an event that cannot be stored (not JSON-serialisable, a lone surrogate),
    so the ingest function can set that event aside before it builds the object.
    """
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def compress_lines(lines: Iterable[bytes]) -> bytes:
    """An archive object from encoded lines (:func:`encode_line`)."""
    # mtime=0: the same events give the same bytes, so a replayed batch is byte-identical.
    return gzip.compress(b"".join(lines), mtime=0)


def encode_lines(events: Iterable[dict[str, Any]]) -> bytes:
    return compress_lines(encode_line(event) for event in events)


def decode_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]


def hour_prefixes(start: datetime, end: datetime) -> list[str]:
    """The ``dt=/hour=`` prefixes that can hold events that arrived in [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end = end.astimezone(UTC)
    prefixes = []
    while hour < end:
        prefixes.append(f"{EVENTS_PREFIX}dt={hour:%Y-%m-%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def list_keys(s3: Any, bucket: str, start: datetime, end: datetime) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in hour_prefixes(start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                yield str(entry["Key"])


def read_events(s3: Any, bucket: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """Every archived event that arrived in [start, end), in key order."""
    for key in list_keys(s3, bucket, start, end):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        yield from decode_lines(body)
