"""Model versions, the active pointer, promote/rollback, and the per-container refresh."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from learnrec.bundle import write_manifest
from learnrec.serving.model_store import (
    ActiveModel,
    LocalModelStore,
    ModelStoreError,
    Pointer,
    S3ModelStore,
    promote,
    rollback,
)


def make_bundle(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / "src" / version
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(version.encode())
    write_manifest(folder, version, parameters={}, metrics={}, data={})
    return folder


@pytest.fixture
def store(tmp_path: Path) -> LocalModelStore:
    store = LocalModelStore(tmp_path / "models")
    for version in ("v1", "v2", "v3"):
        store.publish(make_bundle(tmp_path, version), version)
    return store


def test_versions_and_empty_pointer(store: LocalModelStore) -> None:
    assert store.versions() == ["v1", "v2", "v3"]
    assert store.pointer() == Pointer(None)


def test_promote_then_rollback_walks_back_through_history(store: LocalModelStore) -> None:
    promote(store, "v1")
    promote(store, "v2")
    promote(store, "v3")
    assert store.pointer().active == "v3" and store.pointer().previous == ("v2", "v1")
    assert rollback(store).active == "v2"
    assert rollback(store).active == "v1"
    with pytest.raises(ModelStoreError, match="no earlier active version"):
        rollback(store)


def test_promote_refuses_an_unknown_version(store: LocalModelStore) -> None:
    with pytest.raises(ModelStoreError, match="no model version 'v9'"):
        promote(store, "v9")


def test_publish_refuses_to_overwrite(store: LocalModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="already exists"):
        store.publish(make_bundle(tmp_path / "again", "v1"), "v1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_active_model_rechecks_at_most_once_per_interval(store: LocalModelStore) -> None:
    loads: list[str] = []
    clock = FakeClock()

    def loader(path: Path) -> str:
        loads.append(path.name)
        return path.name

    active = ActiveModel(store, loader, 60.0, clock)
    assert active.get() is None and active.error == "no active model version"
    promote(store, "v1")
    assert active.get() is None  # checked less than a minute ago
    clock.now = 61
    assert active.get() == "v1"
    promote(store, "v2")
    clock.now = 90
    assert active.get() == "v1"
    clock.now = 122
    assert active.get() == "v2"
    rollback(store)
    clock.now = 183
    assert active.get() == "v1" and loads == ["v1", "v2", "v1"]


def test_active_model_keeps_serving_when_a_new_version_fails_to_load(
    store: LocalModelStore,
) -> None:
    promote(store, "v1")
    clock = FakeClock()

    def loader(path: Path) -> str:
        if path.name == "v2":
            raise OSError("corrupt bundle")
        return path.name

    active = ActiveModel(store, loader, 60.0, clock)
    assert active.get() == "v1"
    promote(store, "v2")
    clock.now = 61
    assert active.get() == "v1" and active.version == "v1"
    assert active.error is not None and "corrupt bundle" in active.error


@mock_aws
def test_s3_store_publishes_fetches_and_moves_the_pointer(tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="models")
    store = S3ModelStore("models", "learnrec", client, cache=tmp_path / "cache")
    store.publish(make_bundle(tmp_path, "v1"), "v1")
    store.publish(make_bundle(tmp_path, "v2"), "v2")
    assert store.versions() == ["v1", "v2"]
    assert store.pointer() == Pointer(None)
    promote(store, "v2")
    assert store.pointer().active == "v2"
    fetched = store.fetch("v2")
    assert (fetched / "weights.bin").read_bytes() == b"v2"
    with pytest.raises(ModelStoreError):
        store.fetch("v7")


def test_opensearch_serving_needs_an_endpoint(tmp_path: Path) -> None:
    from learnrec.config import Settings
    from learnrec.serving.context import load_recommender

    with pytest.raises(ValueError, match="OPENSEARCH_ENDPOINT"):
        load_recommender(tmp_path, Settings(vector_index="opensearch"))
