"""Model bundles: the manifest checksums every file, and serving refuses altered bundles."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from learnrec.bundle import (
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    BundleError,
    new_version,
    read_manifest,
    sha256_file,
    write_manifest,
)

CREATED = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"\x00\x01weights" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ranking.json").write_text('{"params": {"depth": 6}}')
    write_manifest(
        tmp_path,
        version="20261126T031500Z",
        parameters={"depth": 6},
        metrics={"ndcg@10": 0.41},
        data={"dataset": "sample", "path": tmp_path},
        created=CREATED,
    )
    return tmp_path


def test_manifest_records_every_file_and_verifies(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    assert manifest["schema"] == MANIFEST_SCHEMA
    assert manifest["version"] == "20261126T031500Z"
    assert manifest["created"] == "2026-11-26T03:15:00Z"
    assert manifest["parameters"] == {"depth": 6}
    assert manifest["metrics"] == {"ndcg@10": 0.41}
    assert manifest["data"] == {"dataset": "sample", "path": str(bundle)}
    assert set(manifest["files"]) == {"model.onnx", "sub/ranking.json"}
    expected = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
    assert manifest["files"]["model.onnx"] == expected
    assert "git_commit" in manifest


def test_write_manifest_returns_what_it_wrote(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    written = write_manifest(tmp_path, "v1", {}, {}, {}, created=CREATED)
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == written
    assert read_manifest(tmp_path) == written


def test_rewriting_the_manifest_does_not_checksum_the_old_one(bundle: Path) -> None:
    manifest = write_manifest(bundle, "v2", {}, {}, {}, created=CREATED)
    assert MANIFEST_FILE not in manifest["files"]
    assert read_manifest(bundle)["version"] == "v2"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 10_000  # more than one read block
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_altered_file_is_refused_by_name(bundle: Path) -> None:
    (bundle / "sub" / "ranking.json").write_text('{"params": {"depth": 7}}')
    with pytest.raises(BundleError, match=r"sub/ranking\.json does not match its checksum"):
        read_manifest(bundle)
    # Without verification the manifest still loads.
    assert read_manifest(bundle, verify=False)["version"] == "20261126T031500Z"


def test_deleted_file_is_refused_by_name(bundle: Path) -> None:
    (bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is missing"):
        read_manifest(bundle)


def test_missing_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="not a model bundle"):
        read_manifest(tmp_path)


def test_new_version_format() -> None:
    assert new_version(datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)) == "20261126T031500Z"
    assert re.fullmatch(r"\d{8}T\d{6}Z", new_version())


def test_new_versions_sort_by_time() -> None:
    start = datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)
    steps = [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(seconds=2),
        timedelta(minutes=1),
        timedelta(hours=5),
        timedelta(days=1),
        timedelta(days=40),
        timedelta(days=400),
    ]
    times = [start + step for step in steps]
    shuffled = random.Random(0).sample(times, len(times))
    assert sorted(new_version(t) for t in shuffled) == [new_version(t) for t in times]


def test_new_version_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert new_version(datetime(2026, 1, 1, 12, 0, tzinfo=plus_two)) == "20260101T100000Z"
