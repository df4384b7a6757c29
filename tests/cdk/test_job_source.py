"""The SageMaker jobs' source archive and the bootstrap at its root."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from learnrec_cdk.job_source import build_source_archive
from moto import mock_aws

from .conftest import REPO

BOOTSTRAP_DIR = REPO / "cdk" / "sagemaker"


def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sagemaker_entry", BOOTSTRAP_DIR / "sagemaker_entry.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_archive_is_reproducible_and_holds_what_the_jobs_run(tmp_path: Path) -> None:
    # The layout without the wheels (test_job_requirements checks those in the real one).
    first = build_source_archive(
        REPO, BOOTSTRAP_DIR, tmp_path / "a" / "sourcedir.tar.gz", with_wheels=False
    )
    second = build_source_archive(
        REPO, BOOTSTRAP_DIR, tmp_path / "b" / "sourcedir.tar.gz", with_wheels=False
    )
    assert first.read_bytes() == second.read_bytes()  # same sources, same asset hash
    with tarfile.open(fileobj=io.BytesIO(first.read_bytes()), mode="r:gz") as archive:
        members = archive.getmembers()
    names = {m.name for m in members}
    assert {"sagemaker_entry.py", "requirements.txt", "requirements-nodeps.txt"} <= names
    assert {"training/train_retrieval.py", "training/train_ranking.py"} <= names
    assert "training/pipeline_step.py" in names
    assert "learnrec/pipeline/definition.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {m.mtime for m in members} == {0}


def test_archive_is_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    out = tmp_path / "sourcedir.tar.gz"
    build_source_archive(REPO, BOOTSTRAP_DIR, out, with_wheels=False)
    stamp = out.stat().st_mtime_ns
    build_source_archive(REPO, BOOTSTRAP_DIR, out, with_wheels=False)
    assert out.stat().st_mtime_ns == stamp
    out.write_bytes(b"stale")
    build_source_archive(REPO, BOOTSTRAP_DIR, out, with_wheels=False)
    assert out.read_bytes() != b"stale"


def test_bootstrap_finds_the_script_both_ways_sagemaker_calls_it() -> None:
    entry = bootstrap()
    # Training job: hyperparameters as --name value, the script among them.
    assert entry.split_arguments(
        ["--no-progress", "True", "--learnrec_entry_point", "training/train_ranking.py"]
    ) == ("training/train_ranking.py", ["--no-progress", "True"])
    # Processing job: the script first, then its arguments.
    assert entry.split_arguments(["training/pipeline_step.py", "build_dataset", "--run", "{}"]) == (
        "training/pipeline_step.py",
        ["build_dataset", "--run", "{}"],
    )
    with pytest.raises(SystemExit):
        entry.split_arguments([])


@mock_aws
def test_bootstrap_builds_the_database_url_from_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    client = boto3.client("secretsmanager", region_name="us-east-1")
    secret = {
        "username": "learnrec",
        "password": "p@ss/word:with?chars",
        "host": "db.cluster.local",
        "port": 5432,
        "dbname": "learnrec",
        "engine": "postgres",
    }
    arn = client.create_secret(Name="db", SecretString=json.dumps(secret))["ARN"]
    url = bootstrap().database_url(arn)
    assert url == (
        "postgresql+psycopg://learnrec:p%40ss%2Fword%3Awith%3Fchars@db.cluster.local:5432/learnrec"
    )
    from sqlalchemy.engine import make_url

    assert make_url(url).password == secret["password"]
