"""Kinesis on the local AWS (moto server) -> poller -> the real ingest handler -> S3, SQS, DB.

The stream, bucket, queue and secret are a fresh stage's (fixture ``aws_names``); the
database is SQLite in the test's folder (PostgreSQL in test_ingest_postgres.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from learnrec.config import Settings
from learnrec.events.producer import KinesisProducer
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.stages import ResourceNames
from learnrec.storage.migrate import upgrade
from learnrec_dev.benchmark.ingest import (
    _environment,
    count_outcome,
    load_handler,
    synthetic_events,
)
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.poller import KinesisPoller


def queue_url(aws: LocalAws, names: ResourceNames) -> str:
    return str(aws.client("sqs").get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"])


def queue_total(aws: LocalAws, names: ResourceNames) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(aws, names),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.fixture
def ingest_env(
    local_aws_server: LocalAws, aws_names: ResourceNames, tmp_path: Path
) -> Iterator[ModuleType]:
    """The ingest handler, configured for this test's stage, as Lambda would run it."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ingest.db'}",
        "S3_BUCKET": aws_names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue_url(local_aws_server, aws_names),
        "USER_ID_HASH_SECRET_ID": aws_names.user_id_hash_secret,
        "KINESIS_STREAM_NAME": aws_names.events_stream,
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }
    upgrade(env["DATABASE_URL"])  # the deployment's migration, before the function runs
    with _environment(env):
        yield load_handler()


def hasher(aws: LocalAws, names: ResourceNames) -> UserIdHasher:
    settings = Settings(user_id_hash_secret_id=names.user_id_hash_secret)
    return UserIdHasher(user_id_hash_key(settings, aws.client("secretsmanager")))


def test_a_mixed_stream_of_10000_lands_once_and_replays_change_nothing(
    local_aws_server: LocalAws, aws_names: ResourceNames, ingest_env: ModuleType
) -> None:
    payloads, valid, bad = synthetic_events(10_000, 0.01, seed=7)
    assert (valid, bad) == (9_900, 100)
    report = KinesisProducer(local_aws_server.client("kinesis"), aws_names.events_stream).send(
        payloads
    )
    assert report.failed == []
    s3 = local_aws_server.client("s3")
    ids = hasher(local_aws_server, aws_names)

    def check() -> None:
        counted = count_outcome(s3, aws_names.data_bucket, payloads, ids)
        assert counted["lines"] == 9_900 and counted["duplicates"] == 0
        assert counted["missing"] == 0 and counted["unexpected"] == 0
        assert queue_total(local_aws_server, aws_names) == 100

    kinesis = local_aws_server.client("kinesis")
    poller = KinesisPoller(
        aws_names.events_stream, ingest_env.handler, kinesis=kinesis, batch_size=500
    )
    assert poller.drain() == 10_000
    check()
    # The same batches again (a new event source mapping from TRIM_HORIZON) ...
    again = KinesisPoller(
        aws_names.events_stream, ingest_env.handler, kinesis=kinesis, batch_size=500
    )
    assert again.drain() == 10_000
    check()
    # ... and cut differently, as a retry after a partial failure would be.
    reshaped = KinesisPoller(
        aws_names.events_stream, ingest_env.handler, kinesis=kinesis, batch_size=333
    )
    assert reshaped.drain() == 10_000
    check()
    message = local_aws_server.client("sqs").receive_message(
        QueueUrl=queue_url(local_aws_server, aws_names), MaxNumberOfMessages=1
    )["Messages"][0]
    body = json.loads(message["Body"])
    assert {"reason", "detail", "shard_id", "sequence_number", "approximate_arrival"} <= set(body)
    assert "payload" in body or "payload_withheld" in body


def test_the_poller_resumes_at_the_first_failed_record(
    local_aws_server: LocalAws, aws_names: ResourceNames, ingest_env: ModuleType
) -> None:
    payloads, _, _ = synthetic_events(40, 0.0, seed=3)
    KinesisProducer(local_aws_server.client("kinesis"), aws_names.events_stream).send(payloads)
    calls: list[list[str]] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        calls.append(sequences)
        if len(calls) == 1:  # report the 4th record failed, having stored nothing
            return {"batchItemFailures": [{"itemIdentifier": sequences[3]}]}
        if len(calls) == 2:
            raise RuntimeError("the function crashed")
        response: dict[str, Any] = ingest_env.handler(event, context)
        return response

    poller = KinesisPoller(
        aws_names.events_stream,
        flaky,
        kinesis=local_aws_server.client("kinesis"),
        batch_size=25,
        retry_delay_s=0.01,
    )
    assert poller.drain() == 40
    assert calls[1][0] == calls[0][3] and calls[2][0] == calls[0][3]  # resumed there, twice
    counted = count_outcome(
        local_aws_server.client("s3"),
        aws_names.data_bucket,
        payloads[3:],
        hasher(local_aws_server, aws_names),
    )
    assert counted["lines"] == 37 and counted["missing"] == 0 and counted["duplicates"] == 0


def test_run_keeps_polling_in_a_thread_until_stopped(
    local_aws_server: LocalAws, aws_names: ResourceNames, ingest_env: ModuleType
) -> None:
    import threading

    kinesis = local_aws_server.client("kinesis")
    poller = KinesisPoller(aws_names.events_stream, ingest_env.handler, kinesis=kinesis)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop, 0.05), daemon=True)
    thread.start()
    payloads, _, _ = synthetic_events(30, 0.0, seed=4)
    KinesisProducer(kinesis, aws_names.events_stream).send(payloads)
    for _ in range(200):
        if poller.handled >= 30:
            break
        stop.wait(0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive() and poller.handled == 30
