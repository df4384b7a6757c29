"""Artifacts move like SageMaker moves them; the run starts from the active pointer."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from learnrec.pipeline.artifacts import download_prefix, pack, tarball_key, unpack, upload_folder
from learnrec.pipeline.functions import handle
from learnrec.stages import ResourceNames
from learnrec.training.jobs import _progress_argument


def test_a_training_output_tarball_unpacks_where_the_files_belong(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "faiss").mkdir(parents=True)
    (model / "faiss" / "index.bin").write_bytes(b"\x00\x01")
    (model / "user_tower.onnx").write_text("onnx")
    channel = tmp_path / "channel"
    pack(model, channel / "job-1" / "output" / "model.tar.gz")
    unpack(channel)
    assert sorted(p.relative_to(channel).as_posix() for p in channel.rglob("*")) == [
        "faiss", "faiss/index.bin", "user_tower.onnx",
    ]  # fmt: skip


@mock_aws
def test_folders_round_trip_through_s3_and_the_tarball_is_found(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    source = tmp_path / "out"
    (source / "fit").mkdir(parents=True)
    (source / "fit" / "a.parquet").write_bytes(b"a")
    assert upload_folder(s3, "bkt", source, "pipeline/r/dataset/") == 1
    assert download_prefix(s3, "bkt", "pipeline/r/dataset/", tmp_path / "in") == 1
    assert (tmp_path / "in" / "fit" / "a.parquet").read_bytes() == b"a"
    assert tarball_key(s3, "bkt", "pipeline/r/dataset/") is None
    s3.put_object(Bucket="bkt", Key="pipeline/r/bundle/job/output/model.tar.gz", Body=b"x")
    assert tarball_key(s3, "bkt", "pipeline/r/") == "pipeline/r/bundle/job/output/model.tar.gz"


@mock_aws
def test_start_fixes_the_active_version_window_and_version() -> None:
    names = ResourceNames("dev")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=names.data_bucket)
    s3.put_object(
        Bucket=names.data_bucket,
        Key="models/active.json",
        Body=json.dumps({"active": "20261101T020000Z", "previous": []}).encode(),
    )
    request = {
        "mode": "ranking",
        "stage": "dev",
        "window_days": 7,
        "window_end": "2026-11-08T00:00:00Z",
    }
    result = handle({"step": "start", "request": request}, clients={"s3": s3})
    assert result["ok"] is True
    run = result["run"]
    assert run["active_version"] == "20261101T020000Z"
    assert run["window_start"] == "2026-11-01T00:00:00Z" and run["mode"] == "ranking"
    assert run["run_id"] == f"{run['version']}-ranking"
    bad = handle({"step": "start", "request": {"window_days": -1}}, clients={"s3": s3})
    assert bad["ok"] is False and "window_days must be positive" in bad["error"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], False),
        (["--no-progress"], True),
        (["--no-progress", "true"], True),
        (["--no-progress", "false"], False),
    ],
)
def test_no_progress_parses_as_sagemaker_passes_it(argv: list[str], expected: bool) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    _progress_argument(parser)
    assert parser.parse_args(argv).no_progress is expected
