"""Batch recommendations: every learner's top k with reasons, for e-mail digests.

The lists must be the ones ``GET /recommend/{user_id}`` would answer at the same moment,
so each learner goes through the route's own functions: the experiment's choice of model
for their hashed id (:func:`~learnrec.serving.core.pick_recommender`) and
:func:`~learnrec.serving.core.recommend_for_learner` (the full path, or popular items for
a learner who opted out, flagged ``opted_out``). An erased learner is skipped: the API
would serve them as a stranger, and no digest goes to someone who asked to be forgotten.
Only the database reads are batched (:mod:`learnrec.storage.bulk`: three queries per
chunk of learners instead of three per learner).

Output: parts of ``part_size`` learners (JSON lines or Parquet) then ``manifest.json``,
written last, so a reader that finds the manifest finds every part it names. Rows carry
``user_key`` (the hashed id); the raw ``user_id`` only for learners read from a file of
raw ids *and* a destination outside the stage's data bucket: learnrec's own stores never
hold raw ids.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import Engine

# A batch's output ends with its manifest, named as a model bundle's is.
from learnrec.bundle import MANIFEST_FILE as MANIFEST_FILE
from learnrec.serving.core import MAX_K, recommend_for_learner
from learnrec.serving.recommender import Recommender, RecommendOptions
from learnrec.stages import DIGESTS_PREFIX
from learnrec.storage import LearnerContext
from learnrec.storage.bulk import chunked, learner_contexts

logger = logging.getLogger("learnrec.serving.batch")

Format = Literal["jsonl", "parquet"]
DEFAULT_PART_SIZE = 10_000
READ_CHUNK = 2_000
"""Learners read from the database together: big enough to amortise round trips."""

RecommenderFor = Callable[[str], tuple[Recommender | None, str | None, list[str]]]
"""hashed id -> (recommender, experiment variant, degraded notes), as the API picks it."""


class BatchError(ValueError):
    """The batch cannot run (no model, a bad destination): a clear message, no trace."""


@dataclass(frozen=True)
class Learners:
    """Who to recommend for: hashed ids, and the raw id of each when it is known."""

    keys: Iterable[str]
    raw: dict[str, str] | None = None  # hashed -> raw, only for ids read from a file


@dataclass
class BatchSummary:
    """What the manifest records, and the command prints."""

    destination: str
    format: Format
    k: int
    model_versions: dict[str, int] = field(default_factory=dict)
    learners: int = 0
    written: int = 0
    opted_out: int = 0
    skipped_erased: int = 0
    degraded: int = 0
    with_raw_ids: bool = False
    parts: list[str] = field(default_factory=list)
    created: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        body = dict(vars(self))
        versions = sorted(self.model_versions, key=lambda v: -self.model_versions[v])
        body["model_version"] = versions[0] if versions else None
        body["learners_per_s"] = round(self.learners / self.seconds, 1) if self.seconds else None
        return body


class Sink(Protocol):
    """Where parts and the manifest go: a local folder or an S3 prefix."""

    @property
    def location(self) -> str: ...

    def write(self, name: str, data: bytes) -> None: ...


@dataclass
class FolderSink:
    folder: Path

    @property
    def location(self) -> str:
        return str(self.folder)

    def write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_bytes(data)


@dataclass
class S3Sink:
    s3: Any
    bucket: str
    prefix: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def write(self, name: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}{name}", Body=data)


def parse_destination(destination: str) -> tuple[str | None, str]:
    """(bucket, prefix ending in '/') of an ``s3://`` URL; (None, folder) for a folder."""
    if not destination.startswith("s3://"):
        if not destination.strip():
            raise BatchError("--out must be a folder or s3://bucket/prefix/")
        return None, destination
    bucket, _, prefix = destination[len("s3://") :].partition("/")
    if not bucket:
        raise BatchError(f"{destination!r} names no bucket: use s3://bucket/prefix/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def sink_for(destination: str, s3: Any = None) -> Sink:
    bucket, prefix = parse_destination(destination)
    if bucket is None:
        return FolderSink(Path(prefix))
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    return S3Sink(s3, bucket, prefix)


def may_write_raw_ids(destination: str, data_bucket: str | None) -> bool:
    """Whether rows may carry raw ids: never into the stage's own data bucket."""
    bucket, _ = parse_destination(destination)
    return bucket is None or bucket != data_bucket


def check_destination(destination: str, data_bucket: str | None) -> None:
    """In the stage's data bucket, digests go under ``digests/`` only.

    That prefix is what the maintenance function deletes a day after each object is
    written (learnrec.privacy.retention), which keeps an erased learner's digest within
    the erasure bound; anywhere else in the bucket it would outlive it.
    """
    bucket, prefix = parse_destination(destination)
    if (
        bucket is not None
        and bucket == data_bucket
        and not (prefix or "").startswith(DIGESTS_PREFIX)
    ):
        raise BatchError(
            f"{destination}: in the stage's data bucket, write digests under "
            f"s3://{bucket}/{DIGESTS_PREFIX} (deleted after a day, so erasures reach them)"
        )


def recommend_row(
    key: str,
    recommender_for: RecommenderFor,
    context: LearnerContext,
    options: RecommendOptions,
) -> dict[str, Any] | None:
    """One learner's row, by the recommend route's rules; None for an erased learner."""
    if context.erased:  # nothing of theirs may shape anything, and no digest goes out
        return None
    recommender, variant, notes = recommender_for(key)
    result = recommend_for_learner(recommender or Recommender(None, None), key, context, options)
    degraded = [*result.degraded, *notes]
    return {
        "user_key": key,
        "model_version": result.model_version,
        "variant": variant,
        "opted_out": context.opted_out,
        "fallback": result.fallback.value if result.fallback else None,
        "degraded": degraded,
        "items": [
            {
                "content_id": item.content_id,
                "title": item.title,
                "score": float(item.score),
                "rank": item.rank,
                "reason": item.reason,
            }
            for item in result.items
        ],
    }


def run_batch(
    engine: Engine,
    recommender_for: RecommenderFor,
    learners: Learners,
    sink: Sink,
    *,
    k: int = 10,
    fmt: Format = "jsonl",
    part_size: int = DEFAULT_PART_SIZE,
    raw_ids: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Recommend for every learner in ``learners``; write parts, then the manifest.

    ``raw_ids`` adds ``user_id`` to rows whose raw id is known; the caller decides it
    with :func:`may_write_raw_ids`.
    """
    if not 1 <= k <= MAX_K:
        raise BatchError(f"k must be between 1 and {MAX_K}, as for GET /recommend")
    if part_size < 1:
        raise BatchError("the part size must be at least 1")
    started = time.perf_counter()
    options = RecommendOptions(k=k)
    summary = BatchSummary(destination=sink.location, format=fmt, k=k)
    summary.with_raw_ids = bool(raw_ids and learners.raw)
    rows: list[dict[str, Any]] = []
    for chunk in chunked(learners.keys, READ_CHUNK):
        contexts = learner_contexts(engine, chunk)
        for key in chunk:
            summary.learners += 1
            row = recommend_row(key, recommender_for, contexts[key], options)
            if row is None:
                summary.skipped_erased += 1
                continue
            if summary.with_raw_ids and learners.raw and key in learners.raw:
                row = {"user_id": learners.raw[key], **row}
            summary.written += 1
            summary.opted_out += bool(row["opted_out"])
            summary.degraded += bool(row["degraded"]) and not row["opted_out"]
            version = row["model_version"] or "none"
            summary.model_versions[version] = summary.model_versions.get(version, 0) + 1
            rows.append(row)
            if len(rows) >= part_size:
                _write_part(sink, summary, rows, fmt)
                rows = []
        if progress is not None:
            progress(len(chunk))
    if rows or not summary.parts:  # an empty run still leaves one (empty) part
        _write_part(sink, summary, rows, fmt)
    summary.created = datetime.now(UTC).isoformat(timespec="seconds")
    summary.seconds = round(time.perf_counter() - started, 3)
    sink.write(MANIFEST_FILE, json.dumps(summary.to_json(), indent=2).encode())
    return summary


def _write_part(sink: Sink, summary: BatchSummary, rows: list[dict[str, Any]], fmt: Format) -> None:
    name = f"part-{len(summary.parts):05d}.{'jsonl' if fmt == 'jsonl' else 'parquet'}"
    sink.write(name, encode_rows(rows, fmt))
    summary.parts.append(name)


def encode_rows(rows: Sequence[dict[str, Any]], fmt: Format) -> bytes:
    """JSON lines, or Parquet with ``items`` a list of structs (one row per learner)."""
    if fmt == "jsonl":
        return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    item = pa.struct(
        [
            ("content_id", pa.string()),
            ("title", pa.string()),
            ("score", pa.float64()),
            ("rank", pa.int32()),
            ("reason", pa.string()),
        ]
    )
    fields = [
        ("user_key", pa.string()),
        ("model_version", pa.string()),
        ("variant", pa.string()),
        ("opted_out", pa.bool_()),
        ("fallback", pa.string()),
        ("degraded", pa.list_(pa.string())),
        ("items", pa.list_(item)),
    ]
    if any("user_id" in row for row in rows):
        fields.insert(0, ("user_id", pa.string()))
    schema = pa.schema(fields)
    table = pa.Table.from_pylist([dict(row) for row in rows], schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def read_learner_file(path: Path, hasher: Callable[[str], str]) -> Learners:
    """Raw platform ids, one a line (blank lines and repeats ignored), hashed in memory."""
    raw: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            user_id = line.strip()
            if not user_id:
                continue
            if len(user_id) > 128:
                raise BatchError(f"{path}:{number}: a user id is at most 128 characters")
            raw.setdefault(hasher(user_id), user_id)
    return Learners(keys=list(raw), raw=raw)
