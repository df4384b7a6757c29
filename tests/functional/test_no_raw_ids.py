"""No raw user id is stored, logged or traced anywhere the event path writes.

The demo's flow, small: sample data (the generator's own event and session ids) goes
through the real api handler, traced as in Lambda (a separate process streaming X-Ray
subsegments to a UDP socket here), into Kinesis on moto server; the real ingest handler,
fed by the local poller, writes the S3 archive, the history and ledger, and dead letters
(the queue, and the bucket's dead-letters/ prefix for one too big for SQS). Records sent
straight to the stream carry raw ids in every place a producer may put them: the user id,
an event id and a session id built from it, the partition key.

Then everything written is read back (every S3 object, decompressed; every row of every
table; every queue message with its attributes; every log line of both handlers; every
trace subsegment) and searched for each raw id. The same search finds the content ids,
so it does look where the ids would be.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from functional.serving_harness import HASH_KEY, REPO
from learnrec.data.dataset import content_items
from learnrec.data.generator import GeneratedData, generate, recent, to_dataset
from learnrec.identity import hash_user_id
from learnrec.serving.auth import generate_key_pair
from learnrec.stages import ResourceNames
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade
from learnrec_dev.benchmark.ingest import _environment, load_handler
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.poller import KinesisPoller

# A trace id as Lambda sets it for a sampled invocation.
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
DIRECT_USER = "raw-learner-direct"  # sent straight to Kinesis, not through the API
# Free-form values are withheld from dead letters (name and size kept): only very many of
# them make one too big for a queue message, so that it is kept in the bucket.
MANY_FIELDS = {f"extra_{n:05d}": n for n in range(6000)}


def _scan(texts: dict[str, str], needles: set[str]) -> dict[str, list[str]]:
    """Where each needle occurs: needle -> the places (S3 key, table, ...) holding it."""
    found: dict[str, list[str]] = {}
    for place, text in texts.items():
        for needle in needles:
            if needle in text:
                found.setdefault(needle, []).append(place)
    return found


class _Lines(logging.Handler):
    """Keeps every record, formatted by the handler's own formatter."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def sample() -> GeneratedData:
    # Event times end now and span less than the retention, as the demo's do.
    now = datetime.now(UTC)
    return recent(generate(users=12, items=30, events=150, seed=3, end=now), now)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    """Stands in for the X-Ray daemon: subsegments arrive here as UDP datagrams."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    yield sock
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recv(65_536).decode())
        except BlockingIOError:
            return out


def test_the_event_path_stores_logs_and_traces_no_raw_id(
    sample: GeneratedData,
    local_aws_server: LocalAws,
    aws_names: ResourceNames,
    udp: socket.socket,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)  # the handlers' level in Lambda
    private_pem, public_pem = generate_key_pair()
    queue_url = local_aws_server.client("sqs").get_queue_url(QueueName=aws_names.dead_letter_queue)[
        "QueueUrl"
    ]
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'learnrec.db'}",
        "MODEL_STORE": str(tmp_path / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": HASH_KEY,
        "KINESIS_STREAM_NAME": aws_names.events_stream,
        "S3_BUCKET": aws_names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }
    raw_ids = {e.user_id for e in sample.events}
    assert all(e.event_id and e.session_id for e in sample.events)
    store = CatalogStore(make_engine(env["DATABASE_URL"]))
    upgrade(store.engine)
    store.upsert_items(content_items(to_dataset(sample).items))
    (tmp_path / "models").mkdir()

    # 1. The API, traced as in Lambda: profiles, events, recommendations.
    service = {"subject": "demo-producer", "roles": ["service"]}
    events = [e.model_dump(mode="json", exclude_none=True) for e in sample.events]
    calls: list[dict[str, Any]] = [
        {**service, "method": "POST", "path": "/events", "body": events[i : i + 100]}
        for i in range(0, len(events), 100)
    ]
    for learner in sample.learners[:3]:
        own = {"subject": learner.user_id, "roles": ["learner"]}
        path = f"/learners/{learner.user_id}/profile"
        body = learner.model_dump(mode="json")
        calls.append({**own, "method": "PUT", "path": path, "body": body})
        calls.append({**own, "method": "GET", "path": f"/recommend/{learner.user_id}"})
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"private_pem": private_pem, "calls": calls}))
    traced = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_TRACE_DISABLED"}
    traced.update(env)
    traced.update(
        {
            "LAMBDA_TASK_ROOT": str(REPO),
            "_X_AMZN_TRACE_ID": TRACE_ID,
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{udp.getsockname()[1]}",
        }
    )
    results_path = tmp_path / "results.json"
    api_run = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "functional" / "traced_api.py"),
            str(job),
            str(results_path),
        ],
        env=traced,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert api_run.returncode == 0, api_run.stderr
    results = json.loads(results_path.read_text())
    assert [r["status"] for r in results] == [202] * (len(calls) - 6) + [200] * 6, results
    # The responses echo the caller's own id (they sent it); everything stored must not.
    assert results[-1]["body"]["user_id"] == sample.learners[2].user_id
    accepted = [r["event_id"] for res in results[:-6] for r in res["body"]["results"]]
    assert len(accepted) == len(events)

    # 2. Producers writing straight to the stream, with raw ids wherever they fit.
    kinesis = local_aws_server.client("kinesis")
    now = datetime.now(UTC) - timedelta(minutes=5)
    direct = {
        "user_id": DIRECT_USER,
        "content_id": sample.items[0].content_id,
        "event_type": "view",
        "ts": now.isoformat(),
        "event_id": f"{DIRECT_USER}-0001",
        "session_id": f"{DIRECT_USER}-session-7",
    }
    records = [
        direct,  # valid
        {**direct, "event_id": f"{DIRECT_USER}-0002", "event_type": "teleport"},  # invalid
        {
            **direct,
            "event_id": f"{DIRECT_USER}-0003",
            "context": {"blob": "x" * 250_000},
            **MANY_FIELDS,
        },
    ]
    data = [json.dumps(r).encode() for r in records]
    data.append(b'{"user_id": "' + DIRECT_USER.encode() + b'", "content_id": ')  # malformed
    kinesis.put_records(
        StreamName=aws_names.events_stream,
        Records=[{"Data": d, "PartitionKey": DIRECT_USER} for d in data],
    )
    raw_ids.add(DIRECT_USER)

    # 3. The ingest handler, fed by the local poller as the event source mapping feeds it.
    with _environment({**env, "POWERTOOLS_TRACE_DISABLED": "true"}):
        ingest = load_handler()
        # Powertools' logger is per service and process: its stream may be an earlier
        # test's, so its lines are caught here, formatted as it formats them.
        lines = _Lines(ingest.logger.registered_formatter)
        ingest.logger.addHandler(lines)
        try:
            poller = KinesisPoller(aws_names.events_stream, ingest.handler, kinesis=kinesis)
            assert poller.drain() == len(events) + len(data)
        finally:
            ingest.logger.removeHandler(lines)

    # 4. Everything that was written, as text.
    texts: dict[str, str] = {}
    s3 = local_aws_server.client("s3")
    keys = [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws_names.data_bucket)
        for entry in page.get("Contents", [])
    ]
    for key in keys:
        body = s3.get_object(Bucket=aws_names.data_bucket, Key=key)["Body"].read()
        texts[f"s3://{key}"] = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()
    assert any(k.startswith("events/") for k in keys)
    assert any(k.startswith("dead-letters/") for k in keys)
    tables = MetaData()
    tables.reflect(store.engine)
    rows = 0
    with store.engine.connect() as conn:
        for table in tables.sorted_tables:
            for row in conn.execute(select(table)):
                rows += 1
                texts[f"{table.name}#{rows}"] = json.dumps(list(row), default=str)
    sqs = local_aws_server.client("sqs")
    messages: list[dict[str, Any]] = []
    while got := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=600,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    ).get("Messages", []):
        messages += got
    for message in messages:
        texts[f"sqs#{message['MessageId']}"] = json.dumps(message)
    segments = _received(udp)
    for n, segment in enumerate(segments):
        texts[f"xray#{n}"] = segment
    captured = capfd.readouterr()
    texts["api stdout"], texts["api stderr"] = api_run.stdout, api_run.stderr
    texts["ingest stdout"], texts["ingest stderr"] = captured.out, captured.err
    texts["ingest log"] = "\n".join(lines.lines)
    texts["log records"] = "\n".join(
        record.getMessage() + (record.exc_text or "") for record in caplog.records
    )

    # What was written is what the flow should have written...
    reasons = sorted(json.loads(m["Body"])["reason"] for m in messages)
    assert reasons == ["invalid event", "malformed JSON", "oversized"]
    archived = [
        json.loads(line)
        for k, t in texts.items()
        if k.startswith("s3://events/")
        for line in t.splitlines()
    ]
    assert len(archived) == len(events) + 1
    assert {e["event_id"] for e in archived} >= set(accepted)
    assert any('"## _handle"' in segment for segment in segments)  # the traced handler
    assert '"message":"batch ingested"' in texts["ingest log"]
    # ...and the search finds what is there: the content ids, in the archive and history.
    content_ids = {e.content_id for e in sample.events}
    assert set(_scan(texts, content_ids)) == content_ids

    # No raw user id anywhere, nor an id built from one, nor the hash's input in clear.
    assert _scan(texts, raw_ids) == {}
    hashed = {hash_user_id(u, HASH_KEY.encode()) for u in raw_ids}
    assert hashed <= set(_scan(texts, hashed))  # every learner is there, by their hash
