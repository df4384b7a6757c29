"""The API over the session's trained model (``quality_run``, tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from functional.serving_harness import HASH_KEY, REPO, STREAM, Api
from learnrec.bundle import MANIFEST_FILE, write_manifest
from learnrec.config import get_settings
from learnrec.data.dataset import Dataset, content_items
from learnrec.serving.auth import generate_key_pair
from learnrec.serving.model_store import LocalModelStore, promote
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade


@pytest.fixture(scope="module")
def api(
    quality_run: Path, small_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("serving")
    models = LocalModelStore(root / "models")
    for version in ("v1", "v2"):
        copy = shutil.copytree(quality_run / "bundle", root / version)
        (copy / MANIFEST_FILE).unlink()
        write_manifest(copy, version, parameters={}, metrics={}, data={})
        models.publish(copy, version)
    promote(models, "v1")
    private_pem, public_pem = generate_key_pair()
    env = {
        "DATABASE_URL": f"sqlite:///{root / 'learnrec.db'}",
        "MODEL_STORE": str(root / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": HASH_KEY,
        "KINESIS_STREAM_NAME": STREAM,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()  # settings are read once per process: read this module's
    aws = mock_aws()
    aws.start()
    try:
        boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
        store = CatalogStore(make_engine(env["DATABASE_URL"]))
        upgrade(store.engine)
        store.upsert_items(content_items(small_dataset.items))
        spec = importlib.util.spec_from_file_location(
            "api_handler", REPO / "functions" / "api" / "handler.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield Api(module, private_pem, store)
    finally:
        get_settings.cache_clear()
        aws.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
