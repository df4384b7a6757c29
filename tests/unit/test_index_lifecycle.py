"""The OpenSearch side of a version's life: filled by build_index, pointed at on promote
and rollback, together with the S3 pointer; checked on the exact requests sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from learnrec.bundle import (
    CATALOG_FILE,
    EMBEDDINGS_FILE,
    EVALUATION_FILE,
    SPACE_FILE,
    write_manifest,
)
from learnrec.config import Settings
from learnrec.features.space import FeatureSpace
from learnrec.pipeline.build_index import build_index
from learnrec.pipeline.definition import Mode
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.functions import (
    ACTIVE_FILE,
    VERSION_FILE,
    promote_step,
    start_run,
)
from learnrec.pipeline.lifecycle import (
    IndexAliasError,
    LifecycleError,
    UnknownVersionError,
    activate,
    alias_swap,
    go_back,
)
from learnrec.pipeline.run import RunContext, RunRequest
from learnrec.schemas import ContentItem
from learnrec.serving.catalog import write_catalog
from learnrec.serving.model_store import LocalModelStore, ModelStore, Pointer, S3ModelStore
from unit.opensearch_recorder import FakeCluster, make_client

ALIAS = "learnrec-items"
OPENSEARCH = Settings(vector_index="opensearch", opensearch_endpoint="https://search.test")


def retrieval_artifact(folder: Path) -> Path:
    """What train_retrieval leaves for build_index: vocabulary, vectors, catalog."""
    items = [
        ContentItem(content_id="c1", topics=["python"], level=1),
        ContentItem(content_id="c2", topics=["sql"], level=2),
        ContentItem(content_id="c3", topics=["python", "sql"]),
    ]
    folder.mkdir(parents=True)
    FeatureSpace.build(["u1"], [i.content_id for i in items], [["x"]], [["t"]]).save(
        folder / SPACE_FILE
    )
    vectors = np.array([[0, 0], [3, 4], [0, 2], [1, 1]], dtype=np.float32)  # row 0: unknown
    np.save(folder / EMBEDDINGS_FILE, vectors)
    write_catalog(items, folder / CATALOG_FILE)
    return folder


def run_context(version: str = "20261108T020000Z") -> RunContext:
    return RunContext(
        run_id=f"{version}-full",
        version=version,
        mode=Mode.FULL,
        stage="dev",
        bucket="bucket",
        window_start=datetime(2026, 11, 1, tzinfo=UTC),
        window_end=datetime(2026, 11, 8, tzinfo=UTC),
        active_version=None,
        model_package_group="learnrec-dev-models",
    )


def test_build_index_creates_and_fills_the_versions_own_index(tmp_path: Path) -> None:
    cluster = FakeCluster()
    summary = build_index(
        run_context(),
        retrieval_artifact(tmp_path / "retrieval"),
        tmp_path / "index",
        settings=OPENSEARCH,
        opensearch_client=make_client(cluster),
    )
    name = f"{ALIAS}-20261108t020000z"
    assert summary["opensearch_index"] == name and summary["items"] == 3
    assert [(r.method, r.path) for r in cluster.requests] == [
        ("PUT", f"/{name}"),
        ("POST", f"/{name}/_bulk"),
        ("POST", f"/{name}/_refresh"),
    ]
    create = cluster.requests[0].body
    assert create["mappings"]["properties"]["vector"]["dimension"] == 2
    bulk = cluster.requests[1].body
    assert [line["index"]["_id"] for line in bulk[::2]] == ["c1", "c2", "c3"]
    assert bulk[1] == {"content_id": "c1", "vector": [0.6, 0.8], "topics": ["python"], "level": 1}
    # The alias is not touched: a candidate the gate turns down is never served.
    assert cluster.aliases == {}
    assert (tmp_path / "index" / "faiss").is_dir()
    # A retried job (same version) refills its own index rather than failing on it.
    again = build_index(
        run_context(),
        tmp_path / "retrieval",
        tmp_path / "again",
        settings=OPENSEARCH,
        opensearch_client=make_client(cluster),
    )
    assert again["opensearch_index"] == name and len(cluster.docs[name]) == 3


def test_build_index_without_an_endpoint_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="needs OPENSEARCH_ENDPOINT"):
        build_index(
            run_context(),
            retrieval_artifact(tmp_path / "retrieval"),
            tmp_path / "index",
            settings=Settings(vector_index="opensearch"),
        )


def store_with(tmp_path: Path, *versions: str) -> LocalModelStore:
    store = LocalModelStore(tmp_path / "models")
    for version in versions:
        bundle = tmp_path / "bundles" / version
        bundle.mkdir(parents=True)
        (bundle / "model.txt").write_text(version)
        write_manifest(bundle, version, parameters={}, metrics={}, data={})
        store.publish(bundle, version)
    return store


def cluster_with(*versions: str, active: str | None = None) -> FakeCluster:
    cluster = FakeCluster()
    for version in versions:
        cluster.indices[f"{ALIAS}-{version}"] = {}
        cluster.docs[f"{ALIAS}-{version}"] = {}
    if active:
        cluster.aliases[ALIAS] = {f"{ALIAS}-{active}"}
    return cluster


def test_promote_and_rollback_move_the_alias_then_the_pointer(tmp_path: Path) -> None:
    store = store_with(tmp_path, "v1", "v2")
    cluster = cluster_with("v1", "v2")
    swap = alias_swap(OPENSEARCH, make_client(cluster))
    assert activate(store, "v1", swap).active == "v1"  # first deployment: no alias yet
    assert cluster.aliases == {ALIAS: {f"{ALIAS}-v1"}}
    cluster.requests.clear()
    assert activate(store, "v2", swap).active == "v2"
    assert [(r.method, r.path, r.body) for r in cluster.requests] == [
        ("GET", f"/_alias/{ALIAS}", None),
        (
            "POST",
            "/_aliases",
            {
                "actions": [
                    {"remove": {"index": f"{ALIAS}-v1", "alias": ALIAS}},
                    {"add": {"index": f"{ALIAS}-v2", "alias": ALIAS}},
                ]
            },
        ),
    ]
    assert go_back(store, swap).active == "v1"
    assert cluster.aliases == {ALIAS: {f"{ALIAS}-v1"}}
    assert alias_swap(Settings(vector_index="faiss")) is None


def test_a_failed_alias_swap_leaves_the_pointer(tmp_path: Path) -> None:
    store = store_with(tmp_path, "v1", "v2")
    cluster = cluster_with("v1", "v2", active="v1")
    activate(store, "v1")
    cluster.down = True
    with pytest.raises(IndexAliasError, match="cannot point the OpenSearch alias at v2"):
        activate(store, "v2", alias_swap(OPENSEARCH, make_client(cluster)))
    assert store.pointer().active == "v1"
    with pytest.raises(UnknownVersionError):
        activate(store, "v9", alias_swap(OPENSEARCH, make_client(cluster)))


class PointerFails:
    """A store whose pointer cannot be written (S3 refusing the put)."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def write_pointer(self, pointer: Pointer) -> None:
        raise OSError("AccessDenied: s3:PutObject models/active.json")


def test_a_pointer_that_cannot_move_takes_the_alias_back(tmp_path: Path) -> None:
    store = store_with(tmp_path, "v1", "v2")
    activate(store, "v1")
    cluster = cluster_with("v1", "v2", active="v1")
    with pytest.raises(OSError, match="AccessDenied"):
        activate(PointerFails(store), "v2", alias_swap(OPENSEARCH, make_client(cluster)))
    assert cluster.aliases == {ALIAS: {f"{ALIAS}-v1"}}
    assert store.pointer().active == "v1"
    with pytest.raises(LifecycleError, match="no earlier active version"):
        go_back(store)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        sagemaker.create_model_package_group(ModelPackageGroupName="learnrec-dev-models")
        yield {"s3": s3, "sagemaker": sagemaker}


def registered_run(aws: dict[str, Any], tmp_path: Path, passed: bool = True) -> RunContext:
    """A run that reached promote: evaluation and version artifacts, a package."""
    s3, sagemaker = aws["s3"], aws["sagemaker"]
    run = start_run(RunRequest(bucket="bucket", window_end=datetime(2026, 11, 8, tzinfo=UTC)), s3)
    store = S3ModelStore("bucket", "models", s3)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.txt").write_text("m")
    write_manifest(bundle, run.version, parameters={}, metrics={}, data={})
    store.publish(bundle, run.version)
    package = sagemaker.create_model_package(
        ModelPackageGroupName=run.model_package_group,
        ModelApprovalStatus="PendingManualApproval",
    )["ModelPackageArn"]
    gate = {"passed": passed, "reason": "ndcg@10 0.31 >= 0.30" if passed else "worse"}
    for artifact, name, body in (
        ("evaluation", EVALUATION_FILE, {"gate": gate}),
        ("version", VERSION_FILE, {"model_package_arn": package}),
    ):
        s3.put_object(Bucket="bucket", Key=run.artifact_key(artifact) + name, Body=json.dumps(body))
    return run


def approval(aws: dict[str, Any], run: RunContext) -> str:
    packages = aws["sagemaker"].list_model_packages(ModelPackageGroupName=run.model_package_group)
    status: str = packages["ModelPackageSummaryList"][0]["ModelApprovalStatus"]
    return status


def test_start_writes_the_run_document_as_an_artifact(aws: dict[str, Any]) -> None:
    run = start_run(RunRequest(bucket="bucket"), aws["s3"])
    body = aws["s3"].get_object(Bucket="bucket", Key=f"pipeline/{run.run_id}/run/run.json")
    assert RunContext.from_json(body["Body"].read().decode()) == run


def test_promote_approves_moves_the_alias_and_the_pointer(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    run = registered_run(aws, tmp_path)
    cluster = cluster_with(run.version.lower())
    result = promote_step(run, aws["s3"], aws["sagemaker"], make_client(cluster), OPENSEARCH)
    assert result["promoted"] is True and result["active"] == run.version
    assert cluster.aliases == {ALIAS: {f"{ALIAS}-{run.version.lower()}"}}
    assert S3ModelStore("bucket", "models", aws["s3"]).pointer().active == run.version
    assert approval(aws, run) == "Approved"
    key = run.artifact_key("active") + ACTIVE_FILE
    assert json.loads(aws["s3"].get_object(Bucket="bucket", Key=key)["Body"].read()) == result
    # A retried state (the pointer already moved) finishes the promotion.
    again = promote_step(run, aws["s3"], aws["sagemaker"], make_client(cluster), OPENSEARCH)
    assert again["promoted"] is True and approval(aws, run) == "Approved"


def test_a_failed_activation_rejects_the_package_and_keeps_the_model(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    run = registered_run(aws, tmp_path)
    cluster = cluster_with(run.version.lower())
    cluster.down = True
    with pytest.raises(StepError, match="cannot point the OpenSearch alias"):
        promote_step(run, aws["s3"], aws["sagemaker"], make_client(cluster), OPENSEARCH)
    assert S3ModelStore("bucket", "models", aws["s3"]).pointer().active is None
    assert approval(aws, run) == "Rejected"


def test_a_failed_gate_rejects_without_touching_the_index(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    run = registered_run(aws, tmp_path, passed=False)
    cluster = cluster_with(run.version.lower())
    result = promote_step(run, aws["s3"], aws["sagemaker"], make_client(cluster), OPENSEARCH)
    assert result["promoted"] is False and result["reason"] == "gate failed: worse"
    assert cluster.requests == [] and approval(aws, run) == "Rejected"
