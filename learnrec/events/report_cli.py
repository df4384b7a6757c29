"""``learnrec report engagement``: CTR and completion rate by variant, from archived events.

Reads the S3 archive (``--bucket``, else ``S3_BUCKET``) over a window of days, or
JSON-lines files given with ``--events`` (plain or gzipped, as the archive stores them),
so the same report runs against the account, the local AWS or an export.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def add_report_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``report engagement`` to the CLI."""
    report = commands.add_parser("report", help="reports over the event archive").add_subparsers(
        dest="report", required=True
    )
    engagement = report.add_parser(
        "engagement", help="CTR and completion rate per experiment variant, with 95% CIs"
    )
    source = engagement.add_mutually_exclusive_group()
    source.add_argument("--bucket", help="data bucket with the event archive (env S3_BUCKET)")
    source.add_argument(
        "--events", type=Path, nargs="+", help="JSON-lines files (.jsonl or .jsonl.gz)"
    )
    engagement.add_argument("--days", type=float, default=14.0, help="window ending now")
    engagement.add_argument("--by", choices=["variant", "model_version"], default="variant")
    engagement.add_argument("--json", action="store_true", help="print JSON instead of a table")
    engagement.set_defaults(func=_engagement_command)


def _engagement_command(args: argparse.Namespace) -> int:
    from learnrec.events.engagement import engagement, format_table, report_json

    if args.days <= 0:
        raise ValueError("--days must be positive")
    end = datetime.now(UTC)
    start = end - timedelta(days=args.days)
    events = _from_files(args.events) if args.events else _from_archive(args.bucket, start, end)
    groups = engagement(events, by=args.by)
    if args.json:
        print(json.dumps(report_json(groups, args.by, (start, end)), indent=2))
    else:
        print(format_table(groups, args.by))
    return 0


def _from_files(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for number, line in enumerate(data.decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                raise ValueError(f"{path}:{number}: not a JSON line") from None


def _from_archive(bucket: str | None, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    import boto3

    from learnrec.config import get_settings
    from learnrec.events.archive import read_events

    bucket = bucket or get_settings().s3_bucket
    if not bucket:
        raise ValueError("give --bucket or --events, or set S3_BUCKET")
    return read_events(boto3.client("s3"), bucket, start, end)
