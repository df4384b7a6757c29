"""The ingest core on one batch at a time: validation, de-duplication, archive, history.

AWS is moto's in-process mock (fast; nothing here needs a server) and the database is
SQLite; the functional tests run the same code against moto server and PostgreSQL.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from learnrec.events.archive import archive_key, decode_lines, encode_lines
from learnrec.events.dead_letter import DeadLetterQueue
from learnrec.events.ingest import Ingestor
from learnrec.events.records import derive_event_id, parse_event
from learnrec.events.stream import StreamRecord, lambda_event, lambda_record, records_from_event
from learnrec.identity import UserIdHasher, hash_user_id
from learnrec.schemas import Event
from learnrec.storage import CatalogStore, IngestStore, make_engine
from learnrec.storage.migrate import upgrade

KEY = b"unit-test-key"
BUCKET = "events-bucket"
ARRIVAL = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
SHARD = "shardId-000000000000"


def event(n: int, user: str = "u1", **fields: Any) -> dict[str, Any]:
    return {
        "user_id": user,
        "content_id": f"c{n}",
        "event_type": "view",
        "ts": f"2026-03-01T10:00:{n % 60:02d}Z",
        **fields,
    }


def records(payloads: list[Any], first_sequence: int = 1) -> list[StreamRecord]:
    """Payloads as one shard's Lambda batch (dicts become JSON, bytes stay bytes)."""
    raw = [
        {
            "Data": p if isinstance(p, bytes) else json.dumps(p).encode(),
            "PartitionKey": "pk",
            "SequenceNumber": f"{first_sequence + i:056d}",
            "ApproximateArrivalTimestamp": ARRIVAL + timedelta(seconds=i),
        }
        for i, p in enumerate(payloads)
    ]
    return records_from_event(lambda_event(lambda_record(SHARD, r, "stream") for r in raw))


@dataclass
class Env:
    ingestor: Ingestor
    s3: Any
    sqs: Any
    queue_url: str
    catalog: CatalogStore

    def archived(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entry in self.s3.list_objects_v2(Bucket=BUCKET, Prefix="events/").get("Contents", []):
            out += decode_lines(self.s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read())
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
            ).get("Messages", [])
            if not got:
                return out
            out += [json.loads(m["Body"]) for m in got]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        engine = make_engine(f"sqlite:///{tmp_path / 'ingest.db'}")
        upgrade(engine)
        store = IngestStore(engine)

        def spill(key: str, data: bytes) -> None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)

        ingestor = Ingestor(
            s3,
            BUCKET,
            store,
            DeadLetterQueue(sqs, queue_url, UserIdHasher(KEY), spill),
            UserIdHasher(KEY),
            "stream",
            clock=lambda: ARRIVAL,  # the events' timestamps are days before it
        )
        yield Env(ingestor, s3, sqs, queue_url, CatalogStore(engine))


def test_a_batch_lands_in_one_object_history_and_the_queue(env: Env) -> None:
    batch = records(
        [
            event(1, event_id="e-1"),
            event(2, event_type="impression"),
            b"{not json",
            event(3, event_type="teleport"),
            event(4, event_type="complete"),
        ]
    )
    outcome = env.ingestor.process(batch)
    assert (outcome.written, outcome.dead_lettered, outcome.failed) == (3, 2, [])
    key = archive_key(ARRIVAL, SHARD, batch[0].sequence_number, batch[-1].sequence_number)
    assert outcome.keys == [key] and key.startswith("events/dt=2026-03-04/hour=05/")
    stored = env.archived()
    hashed = hash_user_id("u1", KEY)
    assert {e["user_id"] for e in stored} == {hashed}  # never the raw id
    assert stored[0]["event_id"] == hash_user_id("e-1", KEY)  # the producer's id, keyed-hashed
    derived = derive_event_id(Event.model_validate(event(2, event_type="impression")), hashed)
    assert stored[1]["event_id"] == derived
    # Impressions are not history: being shown an item is not having consumed it.
    history = {(h.content_id, h.event_type.value) for h in env.catalog.history(hashed)}
    assert history == {("c1", "view"), ("c4", "complete")}
    assert env.catalog.history("u1") == []
    letters = env.dead_letters()
    assert [(x["reason"], x["sequence_number"]) for x in letters] == [
        ("malformed JSON", batch[2].sequence_number),
        ("invalid event", batch[3].sequence_number),
    ]
    # Not a JSON object: it cannot be checked for ids, so only its size is kept.
    assert "payload" not in letters[0] and letters[0]["payload_bytes"] == len(b"{not json")
    assert letters[0]["shard_id"] == SHARD
    assert "event_type" in letters[1]["detail"] and letters[1]["approximate_arrival"]
    assert letters[1]["payload"] == {**event(3, event_type="teleport"), "user_id": hashed}
    assert letters[1]["partition_key"] == hash_user_id("pk", KEY)


def test_a_replayed_batch_overwrites_and_dead_letters_once(env: Env) -> None:
    batch = records([event(1), event(2), b"\xff\xfe not utf-8"])
    env.ingestor.process(batch)
    first = env.s3.get_object(Bucket=BUCKET, Key=env.ingestor.process(batch).keys[0])
    again = env.ingestor.process(batch)
    assert again.written == 2 and again.duplicates == 0 and again.dead_lettered == 0
    assert len(env.archived()) == 2
    assert env.s3.get_object(Bucket=BUCKET, Key=again.keys[0])["ETag"] == first["ETag"]
    letters = env.dead_letters()
    assert len(letters) == 1 and "payload_withheld" in letters[0]


def test_an_event_resent_in_a_later_batch_is_archived_once(env: Env) -> None:
    env.ingestor.process(records([event(1), event(2, event_id="x")]))
    later = env.ingestor.process(
        records([event(2, event_id="x"), event(1), event(3), event(3)], first_sequence=10)
    )
    assert later.written == 1 and later.duplicates == 3
    assert sorted(e["content_id"] for e in env.archived()) == ["c1", "c2", "c3"]


def test_opted_out_learners_are_dropped_and_counted(env: Env) -> None:
    env.catalog.set_opt_out(hash_user_id("private", KEY), True)
    outcome = env.ingestor.process(records([event(1, user="private"), event(2, user="open")]))
    assert outcome.opted_out == 1 and outcome.written == 1
    assert {e["content_id"] for e in env.archived()} == {"c2"}
    assert env.catalog.history(hash_user_id("private", KEY)) == []


def test_bad_input_of_every_kind_goes_to_the_queue_with_its_reason(env: Env) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    batch = records(
        [
            event(1, value="high"),
            event(2, ts=future),
            event(3, context={"blob": "x" * 20_000}),
            [event(4)],
            event(5, ts="2026-03-01T10:00:00"),
        ]
    )
    assert env.ingestor.process(batch).dead_lettered == 5
    reasons = [(x["reason"], x["detail"]) for x in env.dead_letters()]
    assert [r for r, _ in reasons] == ["invalid event", "invalid event", "oversized"] + [
        "invalid event"
    ] * 2
    assert "value" in reasons[0][1] and "future" in reasons[1][1] and "bytes" in reasons[2][1]
    assert env.archived() == []


def test_a_payload_too_big_for_sqs_is_kept_in_the_bucket(env: Env) -> None:
    # Free-form values are withheld (name and size kept), so only very many of them make
    # a payload too big for a queue message.
    extra = {f"field_{n:05d}": n for n in range(6000)}
    big = json.dumps({**event(1, context={"blob": "y" * 300_000}), **extra}).encode()
    batch = records([big])
    assert env.ingestor.process(batch).dead_lettered == 1
    (letter,) = env.dead_letters()
    assert letter["reason"] == "oversized" and "payload" not in letter
    kept = json.loads(env.s3.get_object(Bucket=BUCKET, Key=letter["payload_s3_key"])["Body"].read())
    assert kept["user_id"] == hash_user_id("u1", KEY)
    assert kept["context"] == {"withheld": "free-form: it may hold a raw id", "bytes": 300_011}
    assert kept["field_00007"]["withheld"] and "y" * 100 not in json.dumps(kept)
    assert letter["payload_bytes"] == len(json.dumps(kept, separators=(",", ":")))


def test_dead_letters_hold_no_raw_id(env: Env) -> None:
    """Ids a producer derives from the learner's id are hashed like it, whatever their type."""
    raw = "learner-7f3a"
    batch = records(
        [
            event(
                1, user=f" {raw}", event_type="teleport", event_id=f"{raw}-1", session_id=f"{raw}-s"
            ),
            {"user_id": 4711, "event_id": [raw], "content_id": "c1"},
            b'{"user_id": "' + raw.encode() + b'", "ts": ',  # malformed: withheld
        ]
    )
    assert env.ingestor.process(batch).dead_lettered == 3
    letters = env.dead_letters()
    assert raw not in json.dumps(letters) and "4711" not in json.dumps(letters)
    first, second, _ = (x.get("payload") for x in letters)
    assert first is not None and second is not None
    assert first["user_id"] == hash_user_id(raw, KEY)  # stripped, as the archive's is
    assert first["event_id"] == hash_user_id(f"{raw}-1", KEY)
    assert first["session_id"] == hash_user_id(f"{raw}-s", KEY)
    # A raw id inside a free-form value is not kept either.
    hidden = event(2, event_type="teleport", context={"referred_by": raw})
    assert env.ingestor.process(records([hidden], first_sequence=10)).dead_lettered == 1
    assert raw not in json.dumps(env.dead_letters())
    assert first["event_type"] == "teleport" and first["content_id"] == "c1"  # kept to fix it
    assert second["user_id"] == hash_user_id("4711", KEY)
    assert second["event_id"] == hash_user_id(json.dumps([raw]), KEY)
    assert {x["reason"] for x in letters} == {"invalid event", "malformed JSON"}


def test_a_failed_archive_write_fails_the_batch_and_the_retry_stores_it(env: Env) -> None:
    batch = records([event(1), event(2)])
    real = env.ingestor.bucket
    env.ingestor.bucket = "no-such-bucket"
    failed = env.ingestor.process(batch)
    env.ingestor.bucket = real
    assert failed.failed == [r.sequence_number for r in batch] and failed.written == 0
    assert "archive write failed" in failed.errors[0]
    retried = env.ingestor.process(batch)
    assert retried.failed == [] and len(env.archived()) == 2


def test_a_failed_database_write_removes_the_object_so_a_reshaped_retry_is_not_a_duplicate(
    env: Env,
) -> None:
    batch = records([event(1), event(2), event(3)])
    real_commit = env.ingestor.store.commit

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("connection reset")

    env.ingestor.store.commit = broken  # type: ignore[method-assign]
    failed = env.ingestor.process(batch)
    env.ingestor.store.commit = real_commit  # type: ignore[method-assign]
    assert len(failed.failed) == 3 and env.archived() == []
    # Kinesis redelivers from the first failed record, in batches of another size.
    env.ingestor.process(batch[:2])
    env.ingestor.process(batch[2:])
    assert sorted(e["content_id"] for e in env.archived()) == ["c1", "c2", "c3"]


def test_an_unreachable_queue_fails_the_batch_before_anything_is_archived(env: Env) -> None:
    env.ingestor.dead_letters.queue_url = env.queue_url + "-missing"
    failed = env.ingestor.process(records([event(1), b"bad"]))
    assert failed.failed and "dead-letter" in failed.errors[0]
    assert env.archived() == []


def test_undecodable_kinesis_data_is_dead_lettered() -> None:
    raw = {
        "kinesis": {
            "partitionKey": "pk",
            "sequenceNumber": "1",
            "data": "%%%not base64%%%",
            "approximateArrivalTimestamp": ARRIVAL.timestamp(),
        },
        "eventID": f"{SHARD}:1",
    }
    (record,) = records_from_event({"Records": [raw]})
    assert record.data is None and record.raw_data == "%%%not base64%%%"
    assert record.arrival == ARRIVAL and record.shard_id == SHARD


def test_archive_key_and_bytes_depend_only_on_the_batch() -> None:
    key = archive_key(ARRIVAL, SHARD, "0001", "0009")
    assert key == f"events/dt=2026-03-04/hour=05/{SHARD}/0001-0009.jsonl.gz"
    lines: list[dict[str, Any]] = [{"a": 1}, {"b": "ü"}]
    assert encode_lines(lines) == encode_lines(lines)
    assert decode_lines(encode_lines(lines)) == lines
    assert gzip.decompress(encode_lines(lines)).count(b"\n") == 2


def test_derived_event_ids_are_stable_and_distinguish_events() -> None:
    a = Event.model_validate(event(1))
    assert derive_event_id(a, "h") == derive_event_id(Event.model_validate(event(1)), "h")
    assert derive_event_id(a, "h") != derive_event_id(a, "other-learner")
    b = Event.model_validate(event(1, value=0.5))
    assert derive_event_id(a, "h") != derive_event_id(b, "h")
    parsed = parse_event(json.dumps(event(1)))
    assert isinstance(parsed, Event) and parsed == a


def test_impressions_and_clicks_echoing_a_recommendation_are_counted_for_ctr(env: Env) -> None:
    outcome = env.ingestor.process(
        records(
            [
                event(1, event_type="impression", recommendation_id="r1"),
                event(2, event_type="impression", recommendation_id="r1"),
                event(2, event_type="click", recommendation_id="r1"),
                event(3, event_type="impression"),  # not from a recommendation: not credited
                event(4, event_type="click", value="x"),  # invalid: dead-lettered, not counted
            ]
        )
    )
    metrics = outcome.metrics()
    assert metrics["recommendation_impressions_total"] == 2
    assert metrics["recommendation_clicks_total"] == 1
    assert metrics["events_dead_lettered"] == 1


def test_de_duplication_is_per_learner(env: Env) -> None:
    # Another learner sending ada's event id first suppresses nothing of hers.
    env.ingestor.process(records([event(1, user="mallory", event_id="shared")]))
    later = env.ingestor.process(
        records(
            [event(2, user="ada", event_id="shared"), event(3, user="bob", event_id="shared")],
            first_sequence=10,
        )
    )
    assert (later.written, later.duplicates) == (2, 0)
    assert sorted(e["content_id"] for e in env.archived()) == ["c1", "c2", "c3"]


def test_edge_timestamps_and_control_characters_are_dead_lettered_alone(env: Env) -> None:
    batch = records(
        [
            event(1),
            event(2, ts="0001-01-01T00:00:00+05:00"),
            event(3, ts="9999-12-31T23:00:00-05:00"),
            event(4, content_id="a\x00b"),
            event(5),
            event(6, ts="2025-01-01T00:00:00Z"),  # older than the retention
        ]
    )
    outcome = env.ingestor.process(batch)
    assert (outcome.written, outcome.dead_lettered, outcome.failed) == (2, 4, [])
    details = [x["detail"] for x in env.dead_letters()]
    assert ["ts" in details[0], "ts" in details[1], "content_id" in details[2]] == [True] * 3
    assert "retention" in details[3]


def test_an_event_that_fails_after_validation_is_dead_lettered_alone(env: Env) -> None:
    # A bug reached by one learner's id only (here the hasher raising) costs that event.
    real = env.ingestor.hasher

    def hasher(user_id: str) -> str:
        if user_id == "unlucky":
            raise OverflowError("a bug")
        return real(user_id)

    env.ingestor.hasher = hasher  # type: ignore[assignment]
    outcome = env.ingestor.process(records([event(1), event(2, user="unlucky"), event(3)]))
    assert (outcome.written, outcome.dead_lettered, outcome.failed) == (2, 1, [])
    (letter,) = env.dead_letters()
    assert letter["reason"] == "unprocessable event" and "OverflowError" in letter["detail"]
    assert "a bug" not in letter["detail"]  # an error's message may quote the payload
