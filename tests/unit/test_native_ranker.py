"""Serving's ranker calls libxgboost directly; its scores are XGBoost's own, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from learnrec.features.ranking import FEATURE_NAMES
from learnrec.ranking.model import RANKER_FILE, Ranker
from learnrec.ranking.native import NativeBooster, XGBoostLibraryError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan
    labels = (rng.random(400) < 0.2).astype(np.float32)
    data = xgb.DMatrix(features, labels, feature_names=list(FEATURE_NAMES))
    data.set_group([40] * 10)
    params = {"objective": "rank:ndcg", "max_depth": 4, "nthread": 1, "seed": 1}
    return xgb.train(params, data, num_boost_round=30)


def test_scores_equal_xgboost_inplace_predict(booster: xgb.Booster, tmp_path: Path) -> None:
    ranker = Ranker.from_booster(booster)
    ranker.save(tmp_path, {"trees": 30})
    loaded = Ranker.load(tmp_path)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(100, len(FEATURE_NAMES))).astype(np.float32)
    rows[::7, 3] = np.nan
    expected = booster.inplace_predict(rows, missing=np.nan, validate_features=False)
    np.testing.assert_array_equal(loaded.score(rows), expected)
    np.testing.assert_array_equal(NativeBooster(tmp_path / RANKER_FILE).predict(rows), expected)
    assert loaded.score(rows[:0]).shape == (0,)
    assert loaded.num_boosted_rounds() == 30
    assert loaded.booster.num_boosted_rounds() == 30  # training-side view still there


def test_a_model_trained_on_other_features_is_refused() -> None:
    data = xgb.DMatrix(np.zeros((4, 2), np.float32), [0, 1, 0, 1], feature_names=["a", "b"])
    other = xgb.train({"nthread": 1}, data, num_boost_round=1)
    with pytest.raises(ValueError, match="trained on features"):
        Ranker.from_booster(other)


def test_errors_carry_xgboosts_message(booster: xgb.Booster, tmp_path: Path) -> None:
    with pytest.raises(XGBoostLibraryError):
        NativeBooster(b"not a model")
    with pytest.raises(ValueError, match="rows, features"):
        Ranker.from_booster(booster).score(np.zeros(3, np.float32))


def test_serving_never_imports_xgboost_scipy_sklearn_or_pandas() -> None:
    code = (
        "import sys; from learnrec.serving import recommender; "
        "from learnrec.serving import context; "
        "print(','.join(m for m in ('xgboost','scipy','sklearn','pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == ""


def test_the_rounds_are_chosen_on_held_out_learners() -> None:
    from learnrec.ranking.model import RankerParams, fit_ranker

    rng = np.random.default_rng(3)
    groups = np.full(60, 20)
    features = rng.normal(size=(int(groups.sum()), len(FEATURE_NAMES))).astype(np.float32)
    # Only the first feature carries signal: more trees than a few only fit the noise.
    labels = (features[:, 0] + rng.normal(scale=1.0, size=len(features)) > 1.2).astype(np.float32)
    params = RankerParams(n_estimators=300, early_stopping_rounds=10, seed=1)
    stopped = fit_ranker(features, labels, groups, params)
    assert 1 <= stopped.num_boosted_rounds() < 300
    fixed = fit_ranker(
        features, labels, groups, RankerParams(n_estimators=40, validation_fraction=0.0)
    )
    assert fixed.num_boosted_rounds() == 40
