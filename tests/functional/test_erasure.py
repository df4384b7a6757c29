"""Erasure erases: after the sweep, nothing of an erased learner is left in any store.

The demo's flow, small, on moto server with the bucket versioned as the stack makes it:
events through the stream (the API's hashed form, plus raw records a producer sent
straight to Kinesis, valid, invalid and too big for the queue) into the real ingest
handler; a retraining run of the local pipeline; then one learner is erased and another
opts out; a second run; the maintenance sweep. Then every store is read back (every
version of every S3 object, unpacked: gzip, tarballs, zip/npz, Parquet; every row of
every table; every queue message; every log line) and searched for the erased learner
in every form their id takes (raw, hashed, and the hash of the hash a dead letter keeps
of a partition key).

The stream itself is the one store from which records cannot be deleted: they age out
with its retention (docs/RUNBOOK.md states it); the stream is checked to hold no raw id
of what the API sent, by the events tests.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import tarfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from sqlalchemy import MetaData, select

from functional.pipeline_data import TINY
from functional.serving_harness import HASH_KEY
from functional.test_no_raw_ids import _Lines
from learnrec.bundle import SPACE_FILE
from learnrec.config import Settings
from learnrec.data.generator import GeneratedData, generate, recent
from learnrec.events.producer import KinesisProducer
from learnrec.identity import UserIdHasher
from learnrec.pipeline.definition import Mode
from learnrec.pipeline.local import run_pipeline
from learnrec.pipeline.run import RunRequest
from learnrec.privacy.maintenance import run_maintenance
from learnrec.schemas import Learner
from learnrec.stages import ResourceNames
from learnrec.storage import CatalogStore, PrivacyStore, TombstoneReason, make_engine
from learnrec.storage.migrate import upgrade
from learnrec_dev.benchmark.ingest import _environment, load_handler
from learnrec_dev.cli import main as cli_main
from learnrec_dev.local.aws import LocalAws, local_environment
from learnrec_dev.local.poller import KinesisPoller

pytestmark = pytest.mark.training
# Free-form values are withheld from dead letters (name and size kept): only very many of
# them make one too big for a queue message, so that it is kept in the bucket.
MANY_FIELDS = {f"extra_{n:05d}": n for n in range(6000)}


@dataclass
class Flow:
    names: ResourceNames
    env: dict[str, str]
    store: CatalogStore
    hasher: UserIdHasher
    erased: str  # raw ids
    opted_out: str
    logs: list[str]


def _unpacked(name: str, data: bytes) -> list[tuple[str, bytes]]:
    """An object's content as (member, bytes), containers opened, Parquet as JSON."""
    if data[:2] == b"\x1f\x8b":
        inner = gzip.decompress(data)
        if name.endswith(".tar.gz") or name.endswith(".tgz"):
            out: list[tuple[str, bytes]] = []
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar.getmembers():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        out += _unpacked(f"{name}!{member.name}", handle.read())
            return out
        return [(name, inner)]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [
                item
                for member in archive.namelist()
                for item in _unpacked(f"{name}!{member}", archive.read(member))
            ]
    if data[:4] == b"PAR1":
        frame = pd.read_parquet(io.BytesIO(data))
        return [(name, frame.to_json(orient="records").encode())]
    return [(name, data)]


def _every_object_version(s3: Any, bucket: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []):
            key, version = entry["Key"], entry["VersionId"]
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
            for member, data in _unpacked(key, body):
                found[f"s3://{key}?versionId={version}!{member}"] = data
    return found


def _where(texts: dict[str, bytes], needles: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for place, data in texts.items():
        for needle in needles:
            if needle.encode() in data:
                found.setdefault(needle, []).append(place)
    return found


def _run(names: ResourceNames, catalog: str, work: Path, end: datetime) -> Any:
    request = RunRequest(
        mode=Mode.FULL,
        stage=names.stage,
        window_days=2.0,
        window_end=end,
        hyperparameters=TINY,
        catalog=catalog,
    )
    out = io.StringIO()
    try:
        return run_pipeline(request, work, out)
    finally:
        print(out.getvalue())


def _vocabulary(s3: Any, bucket: str, version: str) -> list[str]:
    key = f"models/versions/{version}/{SPACE_FILE}"
    users: list[str] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["users"]
    return users


@pytest.fixture
def sample() -> GeneratedData:
    now = datetime.now(UTC)
    return recent(generate(users=60, items=40, events=1500, seed=9, end=now), now)


def test_an_erased_learner_is_in_no_store_after_the_sweep(
    sample: GeneratedData,
    local_aws_server: LocalAws,
    aws_names: ResourceNames,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    names = aws_names
    s3 = local_aws_server.client("s3")
    s3.put_bucket_versioning(
        Bucket=names.data_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    queue_url = local_aws_server.client("sqs").get_queue_url(QueueName=names.dead_letter_queue)[
        "QueueUrl"
    ]
    database = f"sqlite:///{tmp_path / 'learnrec.db'}"
    env = {
        "DATABASE_URL": database,
        "MODEL_STORE": f"s3://{names.data_bucket}/models",
        "USER_ID_HASH_KEY": HASH_KEY,
        "KINESIS_STREAM_NAME": names.events_stream,
        "S3_BUCKET": names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    hasher = UserIdHasher(HASH_KEY.encode())
    store = CatalogStore(make_engine(database))
    upgrade(store.engine)
    store.upsert_items(sample.items)
    by_activity = pd.Series([e.user_id for e in sample.events]).value_counts()
    erased, opted_out = str(by_activity.index[0]), str(by_activity.index[1])
    # Profiles as the API stores them: under the hashed id.
    store.upsert_learners(
        Learner.model_validate({**learner.model_dump(), "user_id": hasher(learner.user_id)})
        for learner in sample.learners
    )

    # 1. Events through the stream: the API's hashed form, and raw records of the learner
    #    a producer sent straight to Kinesis (valid, invalid, and too big for the queue).
    kinesis = local_aws_server.client("kinesis")
    sent = KinesisProducer(kinesis, names.events_stream, HASH_KEY.encode()).send(sample.events)
    assert sent.sent == len(sample.events)
    direct = {
        "user_id": erased,
        "content_id": sample.items[0].content_id,
        "event_type": "view",
        "ts": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "event_id": f"{erased}-direct-1",
    }
    raw_records = [
        direct,
        {**direct, "event_id": f"{erased}-direct-2", "event_type": "teleport"},
        {
            **direct,
            "event_id": f"{erased}-direct-3",
            "context": {"blob": "x" * 250_000},
            **MANY_FIELDS,
        },
    ]
    kinesis.put_records(
        StreamName=names.events_stream,
        Records=[{"Data": json.dumps(r).encode(), "PartitionKey": erased} for r in raw_records],
    )
    logs: list[str] = []
    with _environment(env):
        ingest = load_handler()
        lines = _Lines(ingest.logger.registered_formatter)
        ingest.logger.addHandler(lines)
        try:
            poller = KinesisPoller(names.events_stream, ingest.handler, kinesis=kinesis)
            assert poller.drain() == len(sample.events) + len(raw_records)
        finally:
            ingest.logger.removeHandler(lines)
        logs += lines.lines
    key = hasher(erased)
    assert len(store.history(key)) > 0

    # 2. A retraining run: the learner is in the model's vocabulary.
    end = datetime.now(UTC) + timedelta(hours=1)
    with local_environment(), _environment(env):
        first = _run(names, database, tmp_path / "run-1", end)
    assert key in _vocabulary(s3, names.data_bucket, first.run.version)

    # 3. Erasure and opt-out; serving forgets at once, the next run learns from neither.
    privacy = PrivacyStore(store.engine)
    assert privacy.erase_learner(key) is True
    store.set_opt_out(hasher(opted_out), True)
    assert store.learner_context(key).erased and store.learner_context(key).history == []
    with local_environment(), _environment(env):
        second = _run(names, database, tmp_path / "run-2", end)
    second_users = set(_vocabulary(s3, names.data_bucket, second.run.version))
    assert not {key, hasher(opted_out)} & second_users
    assert len(second_users) > 10

    # 4. The maintenance sweep, as the schedule runs it once the runs have finished.
    later = datetime.now(UTC) + timedelta(hours=14)
    with local_environment(), _environment(env):
        report = run_maintenance(Settings(), session=boto3.Session(), now=later)
    logs.append(json.dumps(report))
    erasure = report["erasure"]
    assert erasure["complete"] and erasure["learners"] == 1
    assert erasure["lines_removed"] > 0
    assert erasure["queue_messages_deleted"] == 2  # the invalid event's, the spilled one's
    assert erasure["bundles_unlinked"] == 1  # the first run's; the second never had them
    assert report["retention"]["run_objects_deleted"] > 0
    assert privacy.pending_erasures(later) == []
    assert store.tombstone(key) is TombstoneReason.ERASED  # the tombstone outlives the data
    capsys.readouterr()
    with _environment(env):
        assert cli_main(["privacy", "status", erased]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["hashed_id"] == key and status["tombstone"]["reason"] == "erased"
    assert status["tombstone"]["purged_at"] == later.isoformat()

    # 5. Every store, read back.
    texts = _every_object_version(s3, names.data_bucket)
    tables = MetaData()
    tables.reflect(store.engine)
    with store.engine.connect() as conn:
        for table in tables.sorted_tables:
            if table.name == "learnrec_tombstones":
                continue  # the tombstone is the one thing meant to stay
            for n, row in enumerate(conn.execute(select(table))):
                texts[f"{table.name}#{n}"] = json.dumps(list(row), default=str).encode()
    sqs = local_aws_server.client("sqs")
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
    ).get("Messages", []):
        for message in messages:
            texts[f"sqs#{message['MessageId']}"] = json.dumps(message).encode()
    texts["logs"] = "\n".join(
        logs + [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    ).encode()

    # The search finds what is there: the other learners, by their hashed ids, in the
    # archive, the tables and the bundles' vocabularies...
    others = {hasher(u) for u in list(by_activity.index[2:12])}
    assert set(_where(texts, others)) == others
    assert any(k.startswith("s3://events/") for k in _where(texts, others)[next(iter(others))])
    # ...and nothing of the erased learner, in any form.
    needles = {erased, key, hasher(key)}
    assert _where(texts, needles) == {}
