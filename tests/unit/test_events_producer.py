"""The producer helper: batching within Kinesis limits, retrying only refused records.

Kinesis refusing some records of a call (throttling) cannot be produced on moto, so a
small client stands in for PutRecords here; the real stream is used by the functional
tests and the ingest benchmark.
"""

from __future__ import annotations

import json
import random
from typing import Any

from learnrec.events.producer import MAX_RECORDS_PER_CALL, KinesisProducer
from learnrec.identity import hash_user_id


class ThrottlingKinesis:
    """Refuses the records whose data is in ``refuse`` the first ``times`` times it sees them."""

    def __init__(self, refuse: set[int], times: int = 1, down_calls: int = 0) -> None:
        self.refuse = refuse
        self.times = times
        self.down_calls = down_calls
        self.calls: list[list[dict[str, Any]]] = []
        self.seen: dict[int, int] = {}
        self.stored: list[int] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        if self.down_calls:
            self.down_calls -= 1
            raise ConnectionError("endpoint unreachable")
        out = []
        for record in Records:
            n = json.loads(record["Data"])["n"]
            self.seen[n] = self.seen.get(n, 0) + 1
            if n in self.refuse and self.seen[n] <= self.times:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException"})
            else:
                self.stored.append(n)
                out.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shard-0"})
        return {"Records": out, "FailedRecordCount": sum("ErrorCode" in r for r in out)}


def producer(client: Any, **kwargs: Any) -> tuple[KinesisProducer, list[float]]:
    sleeps: list[float] = []
    made = KinesisProducer(client, "stream", sleep=sleeps.append, rng=random.Random(1), **kwargs)
    return made, sleeps


def test_only_refused_records_are_retried_with_growing_backoff() -> None:
    client = ThrottlingKinesis(refuse={3, 7}, times=2)
    made, sleeps = producer(client, max_attempts=4)
    report = made.send([{"n": n, "user_id": f"u{n}"} for n in range(10)])
    assert report.sent == 10 and report.failed == []
    assert [len(c) for c in client.calls] == [10, 2, 2]
    assert sorted(client.stored) == list(range(10))  # each stored once
    assert len(sleeps) == 2 and all(0 <= s <= 0.1 * 2**a for a, s in enumerate(sleeps, 1))


def test_what_could_not_be_sent_is_reported_by_index() -> None:
    client = ThrottlingKinesis(refuse={1}, times=99)
    made, _ = producer(client, max_attempts=3)
    report = made.send([{"n": n} for n in range(3)])
    assert report.sent == 2
    assert report.failed == [(1, "ProvisionedThroughputExceededException: ")]


def test_an_unreachable_stream_is_retried_then_reported() -> None:
    client = ThrottlingKinesis(refuse=set(), down_calls=1)
    made, _ = producer(client)
    assert made.send([{"n": 1}]).sent == 1
    client = ThrottlingKinesis(refuse=set(), down_calls=99)
    made, _ = producer(client, max_attempts=2)
    report = made.send([{"n": 1}])
    assert report.failed and "stream unavailable" in report.failed[0][1]


def test_calls_respect_the_record_and_byte_limits() -> None:
    client = ThrottlingKinesis(refuse=set())
    made, _ = producer(client)
    made.send([{"n": n} for n in range(1200)])
    assert [len(c) for c in client.calls] == [MAX_RECORDS_PER_CALL, MAX_RECORDS_PER_CALL, 200]
    client = ThrottlingKinesis(refuse=set())
    made, _ = producer(client)
    big = [{"n": n, "pad": "x" * 900_000} for n in range(12)]
    report = made.send([*big, {"n": 99, "pad": "x" * 1_100_000}])
    assert all(sum(len(r["Data"]) for r in c) <= 5 * 1024 * 1024 for c in client.calls)
    assert report.sent == 12 and report.failed[0][0] == 12 and "1 MiB" in report.failed[0][1]


def test_partition_keys_are_hashed_user_ids_never_raw() -> None:
    client = ThrottlingKinesis(refuse=set())
    made, _ = producer(client, hash_key=b"k")
    made.send([{"n": 1, "user_id": "alice"}, {"n": 2}])
    keys = [r["PartitionKey"] for r in client.calls[0]]
    assert keys[0] == hash_user_id("alice", b"k") and "alice" not in keys[1]
