"""Training on small data, end to end: towers, ONNX export, ranker, evaluation, jobs.

Each run takes seconds; the models are tiny and the data is a small generated sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learnrec.bundle import read_manifest
from learnrec.data.dataset import Dataset, split_interactions, write_dataset
from learnrec.features.ranking import FEATURE_NAMES, ItemStats, LearnerState, ranking_features
from learnrec.features.space import FeatureSpace
from learnrec.ranking.model import Ranker
from learnrec.retrieval.onnx_runtime import OnnxTowers
from learnrec.training.inputs import (
    Histories,
    declared_profiles,
    encode_catalog,
    encode_users,
    profile_tokens,
)
from learnrec.training.ranking import candidates_for, feature_matrix

pytestmark = pytest.mark.training

REPO = Path(__file__).resolve().parents[2]


def test_quality_benchmark_writes_metrics_report_and_bundle(quality_run: Path) -> None:
    metrics = json.loads((quality_run / "metrics.json").read_text())
    assert metrics["k"] == 5 and metrics["split"] == "stratified"
    assert set(metrics["models"]) == {"popularity", "ease", "als", "two_tower", "two_tower_ranker"}
    for name, values in metrics["models"].items():
        for key in ("precision@5", "recall@5", "ndcg@5", "map@5", "coverage@5", "simulated_ctr"):
            assert 0.0 <= values[key] <= 1.0, (name, key)
    assert "ctr_lift_vs_popularity" in metrics["models"]["two_tower_ranker"]
    assert "ctr_lift_vs_popularity" not in metrics["models"]["popularity"]
    report = (quality_run / "report.md").read_text()
    assert "two_tower_ranker" in report and "![metrics](metrics.png)" in report
    assert (quality_run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_manifest(quality_run / "bundle")  # verifies every checksum
    assert {"user_tower.onnx", "item_tower.onnx", "ranker.ubj"} <= set(manifest["files"])
    # The baselines' choices, made on a split of the training part, travel with the bundle.
    chosen = manifest["parameters"]["baselines"]
    assert chosen["ease"]["strength"] in {
        s["strength"] for s in metrics["baselines"]["ease"]["search"]
    }
    assert {"factors", "regularization", "alpha", "iterations"} <= set(chosen["als"])
    assert "ease tuned on a validation split" in report and "| als |" in report


def test_learned_models_beat_popularity_on_structured_data(quality_run: Path) -> None:
    # The generator's learners follow topics and levels; popularity cannot see them.
    models = json.loads((quality_run / "metrics.json").read_text())["models"]
    assert models["two_tower_ranker"]["simulated_ctr"] > models["popularity"]["simulated_ctr"]


def test_onnx_towers_match_tensorflow_within_tolerance(quality_run: Path) -> None:
    summary = json.loads((quality_run / "bundle" / "retrieval.json").read_text())
    assert [p["tower"] for p in summary["parity"]] == ["user_tower", "item_tower"]
    assert all(p["max_abs_diff"] <= 1e-4 and p["rows_checked"] > 0 for p in summary["parity"])


def test_export_refuses_a_tower_that_differs(tmp_path: Path, small_dataset: Dataset) -> None:
    from learnrec.retrieval.export import ExportParityError, export_tower
    from learnrec.retrieval.towers import ItemTower, TowerConfig
    from learnrec.training.inputs import build_space

    space = build_space(small_dataset, small_dataset.interactions)
    catalog = encode_catalog(space, small_dataset)
    tower = ItemTower(TowerConfig.for_space(space, embedding_dim=8, hidden_dim=8))
    path = tmp_path / "item_tower.onnx"
    report = export_tower(tower, catalog, path)
    assert report.max_abs_diff <= 1e-4 and path.exists()
    # A negative tolerance stands for an export that computes something else: no file.
    with pytest.raises(ExportParityError, match="differs from TensorFlow"):
        export_tower(tower, catalog, path, tolerance=-1.0)
    assert not path.exists()


def test_ranking_features_are_the_same_in_training_and_serving(
    quality_run: Path, small_dataset: Dataset
) -> None:
    bundle = quality_run / "bundle"
    space = FeatureSpace.load(bundle / "feature_space.json")
    stats = ItemStats.load(bundle / "item_stats.npz")
    train = split_interactions(small_dataset.interactions).train
    histories = Histories.of(train)
    users = sorted(histories.items)[:25]
    candidates, scores = candidates_for(bundle, space, small_dataset, histories, users, 30)
    batch = feature_matrix(stats, space, small_dataset, histories, users, candidates, scores)

    # Serving path: one request, built from raw ids and the profile, through ONNX.
    towers = OnnxTowers(bundle)
    profiles = profile_tokens(small_dataset.learners)
    items = np.load(bundle / "item_embeddings.npy")
    declared = declared_profiles(small_dataset.learners)
    for row, user in enumerate(users):
        inputs = encode_users(space, [user], histories, profiles)
        vector = towers.user(inputs["user_idx"], inputs["history"], inputs["user_features"])[0]
        valid = candidates[row] != 0
        served_scores = items[candidates[row][valid]] @ vector
        np.testing.assert_allclose(served_scores, scores[row][valid], atol=1e-5)
        level, interests = declared[user]
        state = LearnerState.of(
            space, histories.get(user), histories.strengths[user], level, interests
        )
        served = ranking_features(stats, state, candidates[row][valid], served_scores)
        assert served.shape == (valid.sum(), len(FEATURE_NAMES))
        np.testing.assert_allclose(served, batch[row], atol=1e-5, equal_nan=True)


def test_new_item_gets_an_embedding_from_its_features(quality_run: Path) -> None:
    bundle = quality_run / "bundle"
    space = FeatureSpace.load(bundle / "feature_space.json")
    towers = OnnxTowers(bundle)
    tokens = [["topic:python", "level:1", "format:video"], ["topic:design", "level:5"]]
    vectors = towers.item(np.zeros(2, dtype=np.int64), space.encode_item_features(tokens))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_training_entry_points_follow_sagemaker_conventions(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    train = split_interactions(small_dataset.interactions, test_fraction=0.2, seed=1)
    write_dataset(small_dataset, tmp_path / "fit", train.train)
    write_dataset(small_dataset, tmp_path / "labels", train.test)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(tmp_path / "fit"),
        "SM_CHANNEL_LABELS": str(tmp_path / "labels"),
        "SM_CHANNEL_RETRIEVAL": str(tmp_path / "retrieval"),
    }
    hyper = ["--epochs", "2", "--embedding-dim", "8", "--hidden-dim", "16", "--no-progress"]
    subprocess.run(
        [sys.executable, str(REPO / "training" / "train_retrieval.py"), *hyper],
        env={**env, "SM_MODEL_DIR": str(tmp_path / "retrieval")},
        check=True,
        cwd=tmp_path,
    )
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / "train_ranking.py"),
            "--n-estimators",
            "10",
            "--candidates",
            "20",
            "--version",
            "v-test",
            "--no-progress",
        ],
        env={**env, "SM_MODEL_DIR": str(tmp_path / "bundle")},
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["version"] == "v-test"
    manifest = read_manifest(tmp_path / "bundle")
    assert manifest["parameters"]["retrieval"]["epochs"] == 2
    assert manifest["parameters"]["ranking"]["n_estimators"] == 10
    assert {"user_tower.onnx", "ranker.ubj", "feature_space.json"} <= set(manifest["files"])
    # At most the rounds asked for: early stopping on held-out learners may take fewer.
    rounds = json.loads((tmp_path / "bundle" / "ranking.json").read_text())["rounds"]
    assert Ranker.load(tmp_path / "bundle").booster.num_boosted_rounds() == rounds <= 10


def test_retrieval_job_reports_a_missing_channel(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    done = subprocess.run(
        [sys.executable, str(REPO / "training" / "train_retrieval.py")],
        env={**env, "SM_MODEL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "SM_CHANNEL_TRAIN" in done.stderr


def test_tower_settings_are_chosen_on_the_first_folds_held_out_labels(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    from functional.small_models import SMALL_RANKER, SMALL_RETRIEVAL
    from learnrec.evaluation.offline import evaluate_offline

    search = ({"l2": 1e-6, "temperature": 0.05}, {"l2": 1e-3, "temperature": 0.2})
    result = evaluate_offline(
        small_dataset,
        tmp_path / "bundle",
        k=5,
        retrieval_params=SMALL_RETRIEVAL,
        ranker_params=SMALL_RANKER,
        progress=False,
        baseline_names=(),
        cross_fit_folds=2,
        tower_search=search,
    )
    trials = result.metrics["retrieval_search"]
    assert [(t["l2"], t["temperature"]) for t in trials] == [(1e-6, 0.05), (1e-3, 0.2)]
    best = max(trials, key=lambda t: t["ndcg@5"])
    served = json.loads((tmp_path / "bundle" / "retrieval.json").read_text())["params"]
    assert (served["l2"], served["temperature"]) == (best["l2"], best["temperature"])
    assert set(result.metrics["models"]) == {"popularity", "two_tower", "two_tower_ranker"}
    assert set(result.metrics["ranker_features_alone"]) == set(FEATURE_NAMES)
