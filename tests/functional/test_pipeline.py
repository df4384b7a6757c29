"""The whole retraining pipeline, locally, against moto server, on small data.

One stage for the module: a first full run (no active model), a second full run on a
window with a day of new, differently distributed learners (compared with the first,
drift measured), a ranking-only run, failures that must leave the active model alone,
and a serving container that sees promote and rollback without a redeploy.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from functional.pipeline_data import (
    WINDOW_END,
    archive_events,
    catalog_database,
    request,
    sample,
)
from learnrec.bundle import MANIFEST_FILE, read_manifest
from learnrec.config import Settings
from learnrec.pipeline.definition import Mode
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.local import RunOutcome, run_pipeline
from learnrec.serving.model_store import ActiveModel, S3ModelStore
from learnrec.stages import ResourceNames
from learnrec_dev.cli import main as cli_main
from learnrec_dev.local.aws import LocalAws, create_resources, local_environment

pytestmark = pytest.mark.training


@dataclass
class Stage:
    names: ResourceNames
    catalog: str
    workdir: Path
    s3: Any

    @property
    def store(self) -> S3ModelStore:
        return S3ModelStore(
            self.names.data_bucket, "models", self.s3, cache=self.workdir / "model-cache"
        )

    def run(self, mode: Mode = Mode.FULL, **changes: Any) -> RunOutcome:
        out = io.StringIO()
        try:
            return run_pipeline(
                request(self.names, self.catalog, mode, **changes), self.workdir, out
            )
        finally:
            print(out.getvalue())


@pytest.fixture(scope="module")
def module_local_env(local_aws_server: LocalAws) -> Iterator[LocalAws]:
    """The runner's boto3 clients reach the local AWS for this module's tests."""
    with local_environment():
        yield local_aws_server


@pytest.fixture(scope="module")
def stage(module_local_env: LocalAws, tmp_path_factory: pytest.TempPathFactory) -> Stage:
    local_aws_server = module_local_env
    names = ResourceNames(stage=f"p{uuid.uuid4().hex[:10]}")
    create_resources(local_aws_server, names)
    root = tmp_path_factory.mktemp("pipeline")
    data = sample(seed=5)
    s3 = boto3.client("s3")
    archive_events(s3, names.data_bucket, data)
    return Stage(names, catalog_database(root / "catalog.db", data), root / "work", s3)


@pytest.fixture(scope="module")
def first(stage: Stage) -> RunOutcome:
    return stage.run()


@pytest.fixture(scope="module")
def second(stage: Stage, first: RunOutcome) -> RunOutcome:
    # A day later: the same catalog, plus a day of events from other learners.
    later = WINDOW_END + timedelta(days=1)
    archive_events(stage.s3, stage.names.data_bucket, sample(seed=11), later, user_prefix="n")
    return stage.run(window_end=later)


def test_first_run_registers_and_promotes_a_version(stage: Stage, first: RunOutcome) -> None:
    version = first.run.version
    assert [r.name for r in first.steps] == [
        "build_dataset", "train_retrieval", "build_index", "train_ranking", "evaluate",
        "register", "promote",
    ]  # fmt: skip
    models = first.evaluation["models"]
    assert models["active"] is None
    assert models["candidate"]["ndcg@10"] > models["popularity"]["ndcg@10"]
    # The tuned baselines are judged on the same learners, and the gate weighed them.
    best = max(models["ease"]["ndcg@10"], models["als"]["ndcg@10"])
    assert models["candidate"]["ndcg@10"] >= best - 0.02
    assert "of or better than" in first.evaluation["gate"]["reason"]
    assert first.evaluation["baselines"]["ease"]["kind"] == "exact"
    assert first.promotion == {
        "version": version,
        "promoted": True,
        "reason": first.evaluation["gate"]["reason"],
        "active": version,
    }
    assert stage.store.pointer().active == version
    manifest = read_manifest(stage.store.fetch(version))  # every checksum verified
    assert manifest["version"] == version
    assert manifest["data"]["window"]["to"].startswith("2026-09-02T00:00:00")
    assert manifest["parameters"]["retrieval"]["embedding_dim"] == 16
    assert manifest["metrics"]["candidate"] == models["candidate"]
    assert manifest["git_commit"] and manifest["git_commit"] != "unknown"
    files = set(manifest["files"])
    # Exactly the files of the layout (with the unchanged names deployed bundles carry),
    # and the evaluation report, with its plot, as part of the version it judged.
    assert {name for name in files if not name.startswith("report/")} == {
        "user_tower.onnx", "item_tower.onnx", "feature_space.json", "item_embeddings.npy",
        "item_stats.npz", "catalog.jsonl", "catalog.index.npz", "retrieval.json",
        "faiss/index.faiss", "faiss/meta.npz", "ranker.ubj", "ranker.json", "ranking.json",
        "evaluation.json",
    }  # fmt: skip
    assert {"report/report.md", "report/metrics.png"} <= files
    report = (stage.store.fetch(version) / "report" / "report.md").read_text()
    assert "candidate" in report and "popularity" in report and "Gate passes" in report
    assert "| ease |" in report and "| als |" in report
    assert manifest["drift"]["model_drift_score"] is None
    assert manifest["drift"]["profile"]["score"]["fractions"]
    packages = boto3.client("sagemaker").list_model_packages(
        ModelPackageGroupName=stage.names.model_package_group
    )["ModelPackageSummaryList"]
    assert len(packages) == 1
    assert packages[0]["ModelApprovalStatus"] == "Approved"


def test_second_run_is_compared_with_the_active_model(
    stage: Stage, first: RunOutcome, second: RunOutcome
) -> None:
    assert second.run.version != first.run.version
    assert second.run.active_version == first.run.version
    evaluation = second.evaluation
    assert evaluation["models"]["active"] is not None
    assert evaluation["data"]["learners"] > first.evaluation["data"]["learners"]
    gate = evaluation["gate"]
    assert second.promotion["promoted"] is gate["passed"]
    expected_active = second.run.version if gate["passed"] else first.run.version
    assert stage.store.pointer().active == expected_active
    assert set(stage.store.versions()) >= {first.run.version, second.run.version}
    score = evaluation["drift"]["model_drift_score"]
    assert score is not None and score > 0.0  # new learners: the data moved
    manifest = read_manifest(stage.store.fetch(second.run.version), verify=False)
    assert manifest["drift"]["model_drift_score"] == score
    metrics = boto3.client("cloudwatch").list_metrics(
        Namespace="learnrec",
        MetricName="model_drift_score",
        Dimensions=[{"Name": "stage", "Value": stage.names.stage}],
    )["Metrics"]
    assert metrics


def test_ranking_run_keeps_the_active_towers(stage: Stage, second: RunOutcome) -> None:
    active = stage.store.pointer().active
    assert active is not None
    outcome = stage.run(Mode.RANKING, window_end=WINDOW_END + timedelta(days=1))
    assert [r.name for r in outcome.steps] == [
        "build_dataset", "build_index", "train_ranking", "evaluate", "register", "promote",
    ]  # fmt: skip
    towers = read_manifest(stage.store.fetch(active), verify=False)["files"]
    bundle = read_manifest(stage.store.fetch(outcome.run.version), verify=False)["files"]
    for name in ("user_tower.onnx", "item_tower.onnx", "item_embeddings.npy"):
        assert bundle[name] == towers[name]
    assert outcome.promotion["promoted"] is outcome.evaluation["gate"]["passed"]


def _untouched(stage: Stage, change: Any) -> StepError:
    before, versions = stage.store.pointer(), stage.store.versions()
    with pytest.raises(StepError) as failure:
        change()
    assert stage.store.pointer() == before
    assert stage.store.versions() == versions
    return failure.value


def test_an_empty_event_window_stops_the_run(stage: Stage, first: RunOutcome) -> None:
    error = _untouched(stage, lambda: stage.run(window_end=WINDOW_END - timedelta(days=30)))
    assert error.step == "build_dataset"
    assert "no events in the window 2026-08-01T00:00:00Z..2026-08-03T00:00:00Z" in str(error)
    assert f"s3://{stage.names.data_bucket}/events/" in str(error)


def test_a_broken_training_job_stops_the_run(stage: Stage, first: RunOutcome) -> None:
    broken = {"train_retrieval": {"epochs": "many"}}
    error = _untouched(stage, lambda: stage.run(hyperparameters=broken))
    assert error.step == "train_retrieval"
    assert "training job exited with code 2" in str(error)
    assert "argument --epochs: invalid int value: 'many'" in str(error)


def test_the_cli_reports_a_failed_run_and_exits_non_zero(
    stage: Stage, first: RunOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    before = stage.store.pointer()
    code = cli_main(
        [
            "pipeline", "run", "--stage", stage.names.stage, "--database-url", stage.catalog,
            "--window-end", "2026-01-01T00:00:00Z", "--window-days", "1",
            "--workdir", str(stage.workdir),
        ]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "pipeline stopped at build_dataset: no events in the window" in err
    assert "the active model is unchanged" in err
    assert stage.store.pointer() == before


@pytest.fixture
def serving(stage: Stage, second: RunOutcome) -> Iterator[ActiveModel]:
    """A serving container's view of the store: checks the pointer on every request."""
    from learnrec.serving.context import load_recommender

    def load(directory: Path) -> tuple[str, Any]:
        recommender = load_recommender(directory, Settings(vector_index="faiss"))
        return read_manifest(directory, verify=False)["version"], recommender

    yield ActiveModel(stage.store, load, check_interval_s=0)


def test_serving_sees_promote_and_rollback_without_a_redeploy(
    stage: Stage, first: RunOutcome, second: RunOutcome, serving: ActiveModel, capsys: Any
) -> None:
    store_args = ["--stage", stage.names.stage]
    assert cli_main(["models", "promote", second.run.version, *store_args]) == 0
    assert serving.get()[0] == second.run.version
    assert cli_main(["models", "promote", first.run.version, *store_args]) == 0
    assert serving.get()[0] == first.run.version
    assert cli_main(["models", "rollback", *store_args]) == 0
    version, recommender = serving.get()
    assert version == second.run.version
    assert recommender.popular(5)
    capsys.readouterr()
    assert cli_main(["models", "list", "--json", *store_args]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["active"] == second.run.version
    assert {first.run.version, second.run.version} <= {v["version"] for v in listed["versions"]}
    assert cli_main(["models", "show", first.run.version, *store_args]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == first.run.version and shown["active"] is False
    assert MANIFEST_FILE not in shown  # a summary, not the raw file listing
