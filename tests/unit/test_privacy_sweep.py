"""The erasure sweep's own rules: exact matches, every version, and a budget that runs out."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from learnrec.identity import UserIdHasher
from learnrec.privacy.erasure import GRACE, ErasureSweep, without_learners
from learnrec.privacy.retention import DIGESTS_KEPT as RETENTION_DIGESTS
from learnrec.privacy.retention import RetentionSweep
from learnrec.serving.batch import BatchError, check_destination
from learnrec.storage import IngestStore, PrivacyStore, make_engine
from learnrec.storage.migrate import upgrade

BUCKET = "sweep-bucket"
HASH = UserIdHasher(b"sweep-key")
GONE, KEPT = "a" * 32, "a" * 31 + "b"  # one character apart


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def privacy(tmp_path: Path) -> PrivacyStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'sweep.db'}")
    upgrade(engine)
    return PrivacyStore(engine)


def _lines(*users: str) -> bytes:
    return b"".join(json.dumps({"user_id": u, "content_id": "c1"}).encode() + b"\n" for u in users)


def test_only_exact_ids_are_removed() -> None:
    text = _lines(GONE, KEPT, KEPT + "ff", GONE + "0", "x-" + GONE)
    kept, removed = without_learners(text, {GONE.encode()})
    assert removed == 2 and kept == _lines(KEPT, KEPT + "ff", GONE + "0")


def test_a_sweep_out_of_time_leaves_the_erasure_pending_then_finishes(
    s3: Any, privacy: PrivacyStore
) -> None:
    # hour=00 was written twice (a redelivered batch): its older version holds the learner
    # while its current one does not.
    s3.put_object(Bucket=BUCKET, Key="events/dt=2026-11-01/hour=00/a.jsonl.gz", Body=b"")
    for n in range(3):
        body = gzip.compress(_lines(GONE, KEPT))
        s3.put_object(Bucket=BUCKET, Key=f"events/dt=2026-11-01/hour=0{n}/a.jsonl.gz", Body=body)
    s3.put_object(
        Bucket=BUCKET,
        Key="events/dt=2026-11-01/hour=00/a.jsonl.gz",
        Body=gzip.compress(_lines(KEPT)),
    )
    privacy.erase_learner(GONE)
    later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
    budget = iter([600.0, 10.0])  # enough for one object, then too little

    report = ErasureSweep(s3, BUCKET, privacy, HASH, seconds_left=lambda: next(budget, 0.0)).run(
        later
    )

    assert not report.complete and report.objects_scanned == 1
    assert privacy.pending_erasures(later) == [GONE]

    report = ErasureSweep(s3, BUCKET, privacy, HASH).run(later)

    assert report.complete and report.learners == 1 and report.lines_removed == 3
    assert privacy.pending_erasures(later) == []
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="events/")
    bodies = [
        s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
        for v in versions["Versions"]
    ]
    # The learner's lines are in no version; an empty or clean older version may stay.
    assert all(GONE.encode() not in (gzip.decompress(b) if b else b) for b in bodies)
    assert sum(1 for v in versions["Versions"] if v["IsLatest"]) == 3


def test_an_erasure_younger_than_the_grace_period_waits(s3: Any, privacy: PrivacyStore) -> None:
    s3.put_object(Bucket=BUCKET, Key="events/x.jsonl.gz", Body=gzip.compress(_lines(GONE)))
    privacy.erase_learner(GONE)

    report = ErasureSweep(s3, BUCKET, privacy, HASH).run(datetime.now(UTC))

    assert report.learners == 0 and report.objects_scanned == 0
    assert privacy.pending_erasures(datetime.now(UTC) + GRACE) == [GONE]


def test_digests_are_deleted_a_day_after_they_are_written(s3: Any, privacy: PrivacyStore) -> None:
    s3.put_object(Bucket=BUCKET, Key="digests/run-1/part-00000.jsonl", Body=_lines(KEPT))
    s3.put_object(Bucket=BUCKET, Key="digests/run-1/part-00000.jsonl", Body=_lines(KEPT, GONE))
    sweep = RetentionSweep(s3, BUCKET, privacy, IngestStore(privacy.engine))

    assert sweep.run(datetime.now(UTC) + timedelta(hours=12)).digest_objects_deleted == 0
    report = sweep.run(datetime.now(UTC) + RETENTION_DIGESTS + timedelta(minutes=1))

    assert report.digest_objects_deleted == 2  # both versions
    assert "Versions" not in s3.list_object_versions(Bucket=BUCKET, Prefix="digests/")


def test_batch_digests_go_under_digests_in_the_data_bucket() -> None:
    check_destination(f"s3://{BUCKET}/digests/2026-11-29/", BUCKET)
    check_destination("s3://platform-mail/digests/", BUCKET)  # not learnrec's bucket
    check_destination("build/digests", BUCKET)
    with pytest.raises(BatchError, match="digests/"):
        check_destination(f"s3://{BUCKET}/exports/", BUCKET)
