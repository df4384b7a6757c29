"""Property-based: whatever events a producer sends, nothing crashes, blocks or erases.

Hypothesis generates batches of valid events mixed with invalid ones (the edge cases that
once gave 500s or failed a whole batch among them) and sends them through ``POST /events``
of the real app, and through the ingest function's core on PostgreSQL. Whatever it sends:
never a 5xx; every valid event is stored exactly once (for the API: sent to the stream
once, under its learner); every invalid one is refused (API) or dead-lettered (ingest)
with a reason naming what is wrong. Timestamps are relative to the clock the code under
test uses, so the outcome never depends on when the tests run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from functional.serving_harness import STREAM, Api
from functional.test_storage_postgres import pg_engine  # noqa: F401 (the fixture)
from learnrec.events.archive import decode_lines
from learnrec.events.dead_letter import DeadLetterQueue
from learnrec.events.ingest import Ingestor
from learnrec.events.stream import StreamRecord, lambda_event, lambda_record, records_from_event
from learnrec.identity import UserIdHasher
from learnrec.storage import Base, IngestStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the ingest tests' clock
RETENTION = timedelta(days=90)
FIELDS = ("user_id", "content_id", "event_type", "value", "ts", "event_id", "context")

ids = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and s != "")
printable = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=10
)
JsonLeaf = st.none() | st.booleans() | st.integers(-1000, 1000) | printable


@dataclass(frozen=True)
class Case:
    payload: Any  # what is sent
    bad_field: str | None  # None: a valid event


def valid_event(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    seconds = int(RETENTION.total_seconds()) - 3600  # an hour's margin at the old edge
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(["ada", "bob", "cy"]),
            "content_id": ids,
            "event_type": st.sampled_from(["view", "click", "complete", "impression", "like"]),
            "ts": st.integers(0, seconds).map(
                lambda s: (now - timedelta(seconds=s)).isoformat().replace("+00:00", "Z")
            ),
        },
        optional={
            "value": st.floats(-1e6, 1e6, allow_nan=False),
            "event_id": ids,
            "context": st.dictionaries(st.sampled_from(["page", "device", "n"]), JsonLeaf),
        },
    )


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


def invalid_event(now: datetime) -> st.SearchStrategy[Case]:
    """A valid event with one field broken in one of the ways that used to hurt."""
    breakages: dict[str, st.SearchStrategy[Any]] = {
        "ts": st.sampled_from(
            [
                "0001-01-01T00:00:00+05:00",
                "9999-12-31T23:00:00-05:00",
                "2026-01-01T00:00:00",  # no time zone
                (now - RETENTION - timedelta(days=1)).isoformat(),
                (now + timedelta(days=1)).isoformat(),
                "not a time",
            ]
        ),
        "content_id": st.sampled_from(["a\x00b", "\x1b[31m", "x" * 129, "   ", "tab\there"]),
        "user_id": st.sampled_from(["", "nul\x00", "y" * 200]),
        "event_id": st.sampled_from(["\x00", "id\x7f", "z" * 129]),
        "event_type": st.sampled_from(["teleport", "", "VIEW "]),
        "value": st.sampled_from(["high", 1e7, -1e9]),
        "context": st.sampled_from(
            [deep(10), {"x": "\x00"}, {"blob": "x" * 5000}, {"\x00": 1}, {"n": 2**70}, "flat"]
        ),
    }
    return st.sampled_from(sorted(breakages)).flatmap(
        lambda name: st.tuples(valid_event(now), breakages[name]).map(
            lambda pair: Case({**pair[0], name: pair[1]}, name)
        )
    )


def cases(now: datetime) -> st.SearchStrategy[list[Case]]:
    good = valid_event(now).map(lambda e: Case(e, None))
    return st.lists(st.one_of(good, good, invalid_event(now)), min_size=1, max_size=12)


# -- POST /events ----------------------------------------------------------------------


def stream_records() -> list[dict[str, Any]]:
    kinesis = boto3.client("kinesis")
    shard = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while iterator:
        got = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        out += [json.loads(r["Data"]) for r in got["Records"]]
        if not got["Records"]:
            break
        iterator = got.get("NextShardIterator")
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=cases(datetime.now(UTC)))
def test_post_events_refuses_each_bad_event_by_name_and_sends_every_good_one_once(
    api: Api, batch: list[Case]
) -> None:
    before = len(stream_records())
    token = api.token("svc", "service")

    status, body = api.call("POST", "/events", body=[c.payload for c in batch], token=token)

    assert status < 500, body
    good = [c for c in batch if c.bad_field is None]
    assert status == (202 if good else 400), body
    for case, result in zip(batch, body["results"], strict=True):
        if case.bad_field is None:
            assert result["accepted"] and result["event_id"], result
        else:
            assert not result["accepted"]
            named = {e["field"].split(".")[0] for e in result["errors"]}
            assert named & {case.bad_field, "(body)"}, (case, result)
    sent = stream_records()[before:]
    assert len(sent) == len(good)
    good_results = [r for c, r in zip(batch, body["results"], strict=True) if c.bad_field is None]
    for case, result, record in zip(good, good_results, sent, strict=True):
        stored = record["stored"]
        assert stored["content_id"] == case.payload["content_id"].strip()
        assert stored["user_id"] == api.hashed(case.payload["user_id"])
        assert stored["event_id"] == result["event_id"]


def test_post_events_answers_4xx_to_bodies_that_once_gave_500(api: Api) -> None:
    token = api.token("svc", "service")
    for raw in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        status, body = api.call("POST", "/events", body=raw, token=token)
        assert status == 400 and "JSON" in body["detail"]
    ts = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    same_id = [
        {"user_id": user, "content_id": "c1", "event_type": "view", "ts": ts, "event_id": "e"}
        for user in ("ada", "bob")
    ]
    status, body = api.call("POST", "/events", body=same_id, token=token)
    assert status == 202 and body["accepted"] == 2


# -- the ingest function's core on PostgreSQL ------------------------------------------

BUCKET = "events-bucket"
SHARD = "shardId-000000000000"


@dataclass
class IngestEnv:
    ingestor: Ingestor
    s3: Any
    sqs: Any
    queue_url: str
    engine: Engine
    sequence: int = 0

    def send(self, payloads: list[Any]) -> list[StreamRecord]:
        raw = []
        for payload in payloads:
            self.sequence += 1
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            raw.append(
                {
                    "Data": data,
                    "PartitionKey": "pk",
                    "SequenceNumber": f"{self.sequence:056d}",
                    "ApproximateArrivalTimestamp": NOW,
                }
            )
        return records_from_event(lambda_event(lambda_record(SHARD, r, "stream") for r in raw))

    def archived(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="events/")
        for entry in listing.get("Contents", []):
            body = self.s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
            out += decode_lines(body)
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
        ).get("Messages", []):
            out += [json.loads(m["Body"]) for m in got]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
        return out

    def reset(self) -> None:
        with self.engine.begin() as conn:
            names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names}"))
        for entry in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            self.s3.delete_object(Bucket=BUCKET, Key=entry["Key"])
        self.dead_letters()


@pytest.fixture(scope="module")
def ingest_env(pg_engine: Engine) -> Iterator[IngestEnv]:  # noqa: F811
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]

        def spill(key: str, data: bytes) -> None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)

        ingestor = Ingestor(
            s3,
            BUCKET,
            IngestStore(pg_engine),
            DeadLetterQueue(sqs, queue_url, UserIdHasher(b"property-key"), spill),
            UserIdHasher(b"property-key"),
            "stream",
            clock=lambda: NOW,
            retention=RETENTION,
        )
        yield IngestEnv(ingestor, s3, sqs, queue_url, pg_engine)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=cases(NOW))
def test_ingest_stores_every_valid_event_once_and_dead_letters_each_bad_one_alone(
    ingest_env: IngestEnv, batch: list[Case]
) -> None:
    env = ingest_env
    env.reset()
    records = env.send([c.payload for c in batch])

    outcome = env.ingestor.process(records)
    replayed = env.ingestor.process(records)  # Kinesis redelivers; nothing changes

    assert outcome.failed == [] and replayed.failed == [], outcome.errors
    good = [c for c in batch if c.bad_field is None]
    # One learner's event id identifies one event: a repeat within the batch is stored once.
    # Without one, its id is derived from what makes it that event (context aside).
    distinct = {
        (c.payload["user_id"], c.payload["event_id"])
        if "event_id" in c.payload
        else (
            c.payload["user_id"],
            c.payload["content_id"],
            c.payload["event_type"],
            c.payload.get("value"),
            c.payload["ts"],
        )
        for c in good
    }
    archived = env.archived()
    assert len(archived) == outcome.written == len(distinct) == replayed.written
    letters = env.dead_letters()
    assert len(letters) == len(batch) - len(good) == outcome.dead_lettered
    by_position = {int(x["sequence_number"]): x for x in letters}
    bad = [(r, c) for r, c in zip(records, batch, strict=True) if c.bad_field is not None]
    for record, case in bad:
        letter = by_position[int(record.sequence_number)]
        assert letter["reason"] in ("invalid event", "oversized"), letter
        assert case.bad_field in letter["detail"] or "bytes" in letter["detail"], (case, letter)


def test_an_event_the_database_refuses_is_dead_lettered_alone(ingest_env: IngestEnv) -> None:
    """A rule the validator does not know (here a CHECK constraint) refuses one event:
    it goes to the queue with its reason, the rest of the batch is stored, and a
    redelivery neither fails nor dead-letters it twice."""
    env = ingest_env
    env.reset()
    ts = (NOW - timedelta(days=1)).isoformat()
    batch = [
        {"user_id": "ada", "content_id": c, "event_type": "view", "ts": ts}
        for c in ("c1", "poison", "c2", "c3")
    ]
    with env.engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE learnrec_learner_history ADD CONSTRAINT no_poison "
                "CHECK (content_id <> 'poison')"
            )
        )
    try:
        records = env.send(batch)
        outcome = env.ingestor.process(records)
        again = env.ingestor.process(records)
    finally:
        with env.engine.begin() as conn:
            conn.execute(text("ALTER TABLE learnrec_learner_history DROP CONSTRAINT no_poison"))

    assert outcome.failed == [] and again.failed == []
    assert (outcome.written, outcome.dead_lettered) == (3, 1)
    assert sorted(e["content_id"] for e in env.archived()) == ["c1", "c2", "c3"]
    (letter,) = env.dead_letters()
    assert letter["sequence_number"] == records[1].sequence_number
    assert letter["reason"] == "unprocessable event"
    assert "refused" in letter["detail"] and "CheckViolation" in letter["detail"]


def test_the_ingest_handler_stores_the_good_events_beside_edge_timestamps(
    pg_engine: Engine,  # noqa: F811 (skips without PostgreSQL)
) -> None:
    """The reproduction through the real handler: two edge timestamps and a NUL among
    four good events once raised (0 stored, no partial batch response) or failed every
    commit; now the four are stored, the three dead-lettered, and nothing is redelivered."""
    import uuid

    from moto import mock_aws

    from functional.test_storage_postgres import POSTGRES_URL
    from learnrec.serving.apigw import LambdaContext
    from learnrec.storage import make_engine
    from learnrec.storage.migrate import upgrade
    from learnrec_dev.benchmark.ingest import _environment, load_handler

    schema = f"learnrec_handler_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    ts = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    good = [
        {"user_id": f"u{n}", "content_id": f"c{n}", "event_type": "view", "ts": ts}
        for n in range(4)
    ]
    bad = [
        {**good[0], "ts": "0001-01-01T00:00:00+05:00"},
        {**good[0], "ts": "9999-12-31T23:00:00-05:00"},
        {**good[0], "content_id": "a\x00b"},
    ]
    try:
        upgrade(url)
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="handler-bucket")
            sqs = boto3.client("sqs", region_name="us-east-1")
            queue_url = sqs.create_queue(QueueName="handler-dlq")["QueueUrl"]
            env = {
                "DATABASE_URL": url,
                "S3_BUCKET": "handler-bucket",
                "DEAD_LETTER_QUEUE_URL": queue_url,
                "USER_ID_HASH_KEY": "handler-key",
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
            raw = [
                {
                    "Data": json.dumps(p).encode(),
                    "PartitionKey": "pk",
                    "SequenceNumber": f"{i + 1:056d}",
                    "ApproximateArrivalTimestamp": datetime.now(UTC),
                }
                for i, p in enumerate([good[0], *bad[:2], good[1], bad[2], *good[2:]])
            ]
            event = lambda_event(lambda_record(SHARD, r, "stream") for r in raw)
            with _environment(env):
                handler = load_handler()
                response = handler.handler(event, LambdaContext())
            listing = s3.list_objects_v2(Bucket="handler-bucket", Prefix="events/")["Contents"]
            (stored,) = [
                s3.get_object(Bucket="handler-bucket", Key=x["Key"])["Body"].read() for x in listing
            ]
            letters = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    finally:
        engine = make_engine(url)
        with engine.connect() as conn:
            history = conn.scalar(text("SELECT count(*) FROM learnrec_learner_history"))
        engine.dispose()
        with pg_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    assert response == {"batchItemFailures": []}
    assert sorted(e["content_id"] for e in decode_lines(stored)) == ["c0", "c1", "c2", "c3"]
    assert history == 4 and len(letters) == 3
