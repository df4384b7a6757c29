"""Batch recommendations equal the API's answers, and keep its privacy rules.

The API is the real Lambda handler over the small trained bundle (``api`` fixture); the
batch job reads the same database with its bulk queries and writes parts, which are read
back and compared with ``GET /recommend`` learner by learner.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from functional.serving_harness import Api
from learnrec.config import get_settings
from learnrec.data.dataset import Dataset
from learnrec.identity import UserIdHasher
from learnrec.schemas import Learner
from learnrec.serving.batch import (
    MANIFEST_FILE,
    Learners,
    may_write_raw_ids,
    read_learner_file,
    run_batch,
    sink_for,
)
from learnrec.storage.bulk import known_learners, learner_contexts
from learnrec_dev.cli import main

K = 5
DATA_BUCKET = "learnrec-test-data"
DIGEST_BUCKET = "digests-elsewhere"


@pytest.fixture(scope="module")
def learners(api: Api, small_dataset: Dataset) -> dict[str, list[str]]:
    """Raw ids by role, their history and profiles written under hashed ids."""
    counts = small_dataset.interactions["user_id"].value_counts()
    users = [str(u) for u in counts.index[:16]]
    profiles = {
        str(row["user_id"]): row for row in small_dataset.learners.to_dict(orient="records")
    }
    # Half of them with a declared profile: both kinds of learner must match the API.
    api.store.upsert_learners(
        Learner(
            user_id=api.hashed(u),
            level=None if pd.isna(profiles[u]["level"]) else int(profiles[u]["level"]),
            interests=list(profiles[u]["interests"]),
            goals=list(profiles[u]["goals"]),
        )
        for u in users[::2]
        if u in profiles
    )
    frame = small_dataset.interactions[small_dataset.interactions["user_id"].isin(users)]
    api.store.record_history(
        (api.hashed(str(r.user_id)), str(r.content_id), "complete", r.ts.to_pydatetime(), 4.0)
        for r in frame.itertuples()
    )
    opted_out, erased = users[-2], users[-1]
    assert api.call("POST", f"/learners/{opted_out}/opt-out", token=api.token(opted_out))[0] == 200
    assert api.call("DELETE", f"/learners/{erased}", token=api.token(erased))[0] == 200
    return {"served": users[:-2], "opted_out": [opted_out], "erased": [erased]}


def _rows(folder: Path) -> list[dict[str, Any]]:
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    rows: list[dict[str, Any]] = []
    for part in manifest["parts"]:
        if part.endswith(".jsonl"):
            rows += [json.loads(line) for line in (folder / part).read_text().splitlines()]
        else:
            rows += pq.read_table(folder / part).to_pylist()
    return rows


def _api_items(api: Api, user: str) -> dict[str, Any]:
    status, body = api.call("GET", f"/recommend/{user}", {"k": str(K)}, token=api.token(user))
    assert status == 200, body
    return dict(body)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_batch_lists_equal_the_api_and_skip_erased_learners(
    api: Api, learners: dict[str, list[str]], tmp_path: Path, fmt: str
) -> None:
    api.call("GET", "/health")  # the handler builds its context at the first request
    summary = run_batch(
        api.store.engine,
        api.context.recommender_for,
        Learners(keys=known_learners(api.store.engine, page=5)),
        sink_for(str(tmp_path)),
        k=K,
        fmt="parquet" if fmt == "parquet" else "jsonl",
        part_size=4,
    )
    rows = {row["user_key"]: row for row in _rows(tmp_path)}
    assert len(summary.parts) == -(-len(rows) // 4) and summary.written == len(rows)
    assert summary.skipped_erased == 0  # an erased learner has no rows left to be listed
    assert api.hashed(learners["erased"][0]) not in rows
    for user in learners["served"] + learners["opted_out"]:
        body, row = _api_items(api, user), rows[api.hashed(user)]
        assert "user_id" not in row  # no raw id was given, so none can be written
        assert row["items"] == body["items"], user
        assert row["model_version"] == body["model_version"] == "v1"
        assert row["fallback"] == body["fallback"] and row["degraded"] == body["degraded"]
        assert row["opted_out"] is (user in learners["opted_out"])
    assert rows[api.hashed(learners["opted_out"][0])]["fallback"] == "popularity"
    assert summary.opted_out == 1


def test_bulk_reads_equal_the_single_learner_read(api: Api, learners: dict[str, list[str]]) -> None:
    keys = [api.hashed(u) for roles in learners.values() for u in roles] + ["nobody"]
    bulk = learner_contexts(api.store.engine, keys, history_limit=7)
    for key in keys:
        assert bulk[key] == api.store.learner_context(key, history_limit=7), key


@pytest.fixture
def stage(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The api fixture's stage with a data bucket, read afresh by the command line."""
    s3 = boto3.client("s3")
    for bucket in (DATA_BUCKET, DIGEST_BUCKET):
        s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("S3_BUCKET", DATA_BUCKET)
    get_settings.cache_clear()
    yield s3
    get_settings.cache_clear()


def _objects(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Every object under ``prefix`` as text; Parquet decoded, as its pages are compressed."""
    found = {}
    for listed in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        data = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read()
        if listed["Key"].endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
            found[listed["Key"]] = json.dumps(rows)
        else:
            found[listed["Key"]] = data.decode("latin-1")
    return found


def test_raw_ids_never_reach_the_data_bucket(
    api: Api,
    learners: dict[str, list[str]],
    stage: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    everyone = [u for roles in learners.values() for u in roles]
    listing = tmp_path / "learners.txt"
    listing.write_text("\n".join([*everyone, "", everyone[0]]) + "\n")
    for fmt in ("jsonl", "parquet"):
        args = ["recommend", "batch", "--learners", str(listing), "--k", str(K)]
        assert main([*args, "--format", fmt, "--out", f"s3://{DATA_BUCKET}/digests/{fmt}/"]) == 0
        assert main([*args, "--format", fmt, "--out", f"s3://{DIGEST_BUCKET}/{fmt}"]) == 0
        assert '"with_raw_ids": true' in capsys.readouterr().out  # the second run's summary
        inside = _objects(stage, DATA_BUCKET, f"digests/{fmt}/")
        outside = _objects(stage, DIGEST_BUCKET, f"{fmt}/")
        assert MANIFEST_FILE in {k.rsplit("/", 1)[-1] for k in inside}
        served = learners["served"] + learners["opted_out"]
        for user in served:  # the hashed ids are there, so the search looks in the right place
            assert any(api.hashed(user) in text for text in inside.values())
            assert not any(user in text for text in inside.values()), user
            assert any(user in text for text in outside.values()), user
        # The erased learner is in the file, and nowhere in either output.
        erased = learners["erased"][0]
        for text in [*inside.values(), *outside.values()]:
            assert api.hashed(erased) not in text and erased not in text
        data_manifest = json.loads(inside[f"digests/{fmt}/{MANIFEST_FILE}"])
        assert data_manifest["skipped_erased"] == 1 and data_manifest["with_raw_ids"] is False
        assert data_manifest["written"] == len(served) and data_manifest["model_version"] == "v1"
        assert json.loads(outside[f"{fmt}/{MANIFEST_FILE}"])["with_raw_ids"] is True


def test_raw_id_rule_and_learner_file(tmp_path: Path) -> None:
    assert not may_write_raw_ids(f"s3://{DATA_BUCKET}/any/", DATA_BUCKET)
    assert may_write_raw_ids(f"s3://{DIGEST_BUCKET}/", DATA_BUCKET)
    assert may_write_raw_ids(str(tmp_path), DATA_BUCKET)
    listing = tmp_path / "ids.txt"
    listing.write_text(" a \n\nb\na\n")
    read = read_learner_file(listing, UserIdHasher(b"k"))
    assert read.raw is not None and sorted(read.raw.values()) == ["a", "b"]
    assert list(read.keys) == list(read.raw)
    listing.write_text("x" * 129 + "\n")
    with pytest.raises(ValueError, match="at most 128"):
        read_learner_file(listing, UserIdHasher(b"k"))


def test_command_line_refuses_bad_input_clearly(
    stage: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "batch", "--out", str(tmp_path), "--k", "0"]) == 2
    assert "k must be between 1 and 100" in capsys.readouterr().err
    missing = tmp_path / "absent.txt"
    assert main(["recommend", "batch", "--out", str(tmp_path), "--learners", str(missing)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["recommend", "batch", "--out", "s3:///prefix"]) == 2
    assert "names no bucket" in capsys.readouterr().err
