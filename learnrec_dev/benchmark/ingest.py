"""``learnrec benchmark ingest``: events through Kinesis and the real ingest handler, counted.

On the local AWS (moto server on 127.0.0.1:4566, started here when none is running and
stopped again after), under a fresh stage: N events, about 1% of them bad in the ways
producers get events wrong, are put on the stream with the producer helper, drained by
the local poller through ``functions/ingest/handler.py``, and then counted where they
ended up: valid events in the S3 archive (each exactly once), bad ones in the dead-letter
queue. ``events_per_s`` is handler throughput: events divided by the time spent inside
the handler, which excludes producing and GetRecords (Lambda does those for the function).

Writes ``DIR/ingest.json``; the SQLite database is left in ``DIR/work/``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from learnrec_dev.benchmark.arguments import at_least

RESULT_FILE = "ingest.json"
TARGET_EVENTS_PER_S = 5000.0
HANDLER = Path(__file__).resolve().parents[2] / "functions" / "ingest" / "handler.py"
BAD_KINDS = ("malformed_json", "wrong_type", "unknown_event_type", "future_ts", "oversized")
VALID_TYPES = ("view", "click", "start", "progress", "complete", "like", "bookmark", "impression")


def synthetic_events(n: int, bad_fraction: float, seed: int) -> tuple[list[bytes], int, int]:
    """``n`` payloads (bytes as a producer sends them): (payloads, valid, bad).

    Every valid event is distinct (its own timestamp), half carry an ``event_id``, half
    rely on the derived one; bad ones cycle through :data:`BAD_KINDS`.
    """
    rng = random.Random(seed)
    n_bad = round(n * bad_fraction)
    bad_at = set(rng.sample(range(n), n_bad))
    users = max(1, n // 20)
    start = datetime.now(UTC) - timedelta(days=1)
    payloads: list[bytes] = []
    for i in range(n):
        event: dict[str, Any] = {
            "user_id": f"learner-{rng.randrange(users):06d}",
            "content_id": f"item-{rng.randrange(500):05d}",
            "event_type": rng.choice(VALID_TYPES),
            "ts": (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        }
        if i % 2:
            event["event_id"] = f"bench-{seed}-{i}"
        if event["event_type"] == "progress":
            event["value"] = round(rng.random(), 3)
        if i in bad_at:
            kind = BAD_KINDS[len(payloads) % len(BAD_KINDS)]
            payloads.append(_spoil(event, kind))
        else:
            payloads.append(json.dumps(event, separators=(",", ":")).encode())
    return payloads, n - n_bad, n_bad


def _spoil(event: dict[str, Any], kind: str) -> bytes:
    if kind == "malformed_json":
        return json.dumps(event).encode()[:-3]
    if kind == "wrong_type":
        event["value"] = "high"
    elif kind == "unknown_event_type":
        event["event_type"] = "teleport"
    elif kind == "future_ts":
        event["ts"] = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    else:
        event["context"] = {"blob": "x" * 40_000}
    return json.dumps(event).encode()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    from learnrec.config import get_settings

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def load_handler(path: Path = HANDLER) -> ModuleType:
    """A fresh copy of the handler module: its cached dependencies follow the environment."""
    spec = importlib.util.spec_from_file_location(f"ingest_handler_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no ingest handler at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_ingest(
    events: int,
    out: Path,
    batch_size: int = 500,
    bad_fraction: float = 0.01,
    shards: int = 1,
    seed: int = 42,
) -> dict[str, Any]:
    """Run the benchmark; return what it writes to ``DIR/ingest.json``."""
    from learnrec.config import Settings
    from learnrec.events.producer import KinesisProducer
    from learnrec.function_env import Value, function_environment
    from learnrec.identity import UserIdHasher, user_id_hash_key
    from learnrec.stages import ResourceNames
    from learnrec_dev.local.aws import create_resources, local_aws, local_environment
    from learnrec_dev.local.poller import KinesisPoller

    if events < 1:
        raise ValueError("--events must be at least 1")
    if not 0 <= bad_fraction < 1:
        raise ValueError("--bad-fraction must be in [0, 1)")
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    payloads, n_valid, n_bad = synthetic_events(events, bad_fraction, seed)
    with local_aws(log_file=work / "moto_server.log") as aws, local_environment():
        names = ResourceNames(stage=f"bench{uuid.uuid4().hex[:8]}")
        resources = create_resources(aws, names, shards=shards)
        database_url = f"sqlite:///{work / 'ingest.db'}"
        settings: dict[str, Value] = {
            "database_url": database_url,
            "s3_bucket": names.data_bucket,
            "dead_letter_queue_url": resources["dead_letter_queue_url"],
            "user_id_hash_secret_id": names.user_id_hash_secret,
            "events_stream": names.events_stream,
        }
        env = {**function_environment("ingest", settings), "POWERTOOLS_LOG_LEVEL": "WARNING"}
        from learnrec.storage.migrate import upgrade

        upgrade(database_url)  # the schema, as the deployment's migration makes it
        with _environment(env):
            handler = load_handler()
            t = time.perf_counter()
            producer = KinesisProducer(aws.client("kinesis"), names.events_stream)
            report = producer.send(payloads)
            produce_s = time.perf_counter() - t
            poller = KinesisPoller(
                names.events_stream,
                handler.handler,
                kinesis=aws.client("kinesis"),
                batch_size=batch_size,
            )
            t = time.perf_counter()
            # The handler prints its metrics (EMF) to stdout as in Lambda; not to ours.
            with contextlib.redirect_stdout(io.StringIO()):
                handled = poller.drain()
            drain_s = time.perf_counter() - t
            key = user_id_hash_key(Settings(), aws.client("secretsmanager"))
        counted = count_outcome(aws.client("s3"), names.data_bucket, payloads, UserIdHasher(key))
        dead = count_dead_letters(aws.client("sqs"), resources["dead_letter_queue_url"])
        started_here = aws.started_here
    lost_valid = counted["missing"]
    lost_bad = max(0, n_bad - dead["unique"])
    result: dict[str, Any] = {
        "events": events,
        "events_per_s": round(events / poller.handler_seconds, 1) if poller.handler_seconds else 0,
        "written": counted["lines"],
        "dead_lettered": dead["messages"],
        "duplicates": counted["duplicates"] + (dead["messages"] - dead["unique"]),
        "lost": lost_valid + lost_bad + len(report.failed),
        "valid_sent": n_valid,
        "bad_sent": n_bad,
        "not_produced": len(report.failed),
        "dead_letter_reasons": dead["reasons"],
        "records_handled": handled,
        "handler_invocations": poller.invocations,
        "batch_size": batch_size,
        "shards": shards,
        "archive_objects": counted["objects"],
        "timings_s": {
            "handler_s": round(poller.handler_seconds, 3),
            "drain_s": round(drain_s, 3),
            "produce_s": round(produce_s, 3),
            "total_s": round(time.perf_counter() - started, 3),
        },
        "targets": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "met": bool(
                poller.handler_seconds
                and events / poller.handler_seconds >= TARGET_EVENTS_PER_S
                and lost_valid + lost_bad == 0
                and counted["duplicates"] == 0
            ),
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "local_aws_started_here": started_here,
            "database": "sqlite (file)",
        },
        "seed": seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def count_outcome(
    s3: Any, bucket: str, payloads: list[bytes], hasher: Callable[[str], str]
) -> dict[str, int]:
    """Archived lines, duplicate event ids among them, and valid events not archived."""
    from learnrec.events.archive import decode_lines
    from learnrec.events.records import Rejection, parse_event, stored_event_id
    from learnrec.stages import EVENTS_PREFIX

    ids: Counter[str] = Counter()
    objects = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=EVENTS_PREFIX):
        for entry in page.get("Contents", []):
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            ids.update(e["event_id"] for e in decode_lines(body))
    expected: set[str] = set()
    for payload in payloads:
        event = parse_event(payload)
        if not isinstance(event, Rejection):
            expected.add(stored_event_id(event, hasher))
    return {
        "objects": objects,
        "lines": sum(ids.values()),
        "duplicates": sum(n - 1 for n in ids.values()),
        "missing": len(expected - set(ids)),
        "unexpected": len(set(ids) - expected),
    }


def count_dead_letters(sqs: Any, queue_url: str) -> dict[str, Any]:
    """Every message in the queue (received, not deleted): count, distinct records, reasons."""
    positions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    empty_polls = 0
    while empty_polls < 2:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600, WaitTimeSeconds=0
        )
        messages = response.get("Messages", [])
        if not messages:
            empty_polls += 1
            continue
        empty_polls = 0
        for message in messages:
            body = json.loads(message["Body"])
            positions[f"{body['shard_id']}:{body['sequence_number']}"] += 1
            reasons[body["reason"]] += 1
    return {
        "messages": sum(positions.values()),
        "unique": len(positions),
        "reasons": dict(sorted(reasons.items())),
    }


def format_summary(result: dict[str, Any]) -> str:
    verdict = "met" if result["targets"]["met"] else "MISSED"
    return "\n".join(
        [
            f"ingest benchmark: {result['events']} events "
            f"({result['valid_sent']} valid, {result['bad_sent']} bad), "
            f"batches of {result['batch_size']}, {result['shards']} shard(s)",
            f"  handler throughput {result['events_per_s']:.0f} events/s "
            f"({result['timings_s']['handler_s']:.2f} s in the handler, "
            f"{result['handler_invocations']} invocations)",
            f"  written {result['written']}  dead-lettered {result['dead_lettered']}  "
            f"duplicates {result['duplicates']}  lost {result['lost']}",
            f"  target (>= {TARGET_EVENTS_PER_S:.0f} events/s, nothing lost or duplicated): "
            f"{verdict}",
        ]
    )


def add_ingest_command(bench_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``benchmark ingest`` to the ``benchmark`` subcommands of the CLI."""
    ingest = bench_subparsers.add_parser(
        "ingest", help="events through Kinesis and the ingest handler on the local AWS"
    )
    ingest.add_argument("--events", type=at_least(1), default=50_000)
    ingest.add_argument("--out", type=Path, required=True)
    ingest.add_argument("--batch-size", type=at_least(1), default=500, help="records per call")
    ingest.add_argument("--bad-fraction", type=float, default=0.01)
    ingest.add_argument("--shards", type=at_least(1), default=1)
    ingest.add_argument("--seed", type=int, default=42)
    ingest.set_defaults(func=_ingest_command)


def _ingest_command(args: argparse.Namespace) -> int:
    result = run_ingest(
        args.events, args.out, args.batch_size, args.bad_fraction, args.shards, args.seed
    )
    print(format_summary(result))
    print(f"figures: {args.out / RESULT_FILE}")
    return 0
