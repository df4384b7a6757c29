"""The XGBoost learning-to-rank model over retrieval candidates.

Served from XGBoost's native model file (``ranker.ubj``); its feature order is
:data:`learnrec.features.ranking.FEATURE_NAMES`, checked on load so that a model trained
on other features is refused rather than fed the wrong columns.

Training fits with the xgboost package; serving predicts through libxgboost directly
(:mod:`learnrec.ranking.native`), so the API never imports xgboost and with it scipy,
scikit-learn and pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# learnrec.bundle owns the file names; serving code also imports them from here.
from learnrec.bundle import RANKER_FILE as RANKER_FILE
from learnrec.bundle import RANKER_META_FILE as RANKER_META_FILE
from learnrec.bundle import BundleLayout
from learnrec.features.ranking import FEATURE_NAMES
from learnrec.ranking.native import NativeBooster


@dataclass(frozen=True)
class RankerParams:
    """XGBoost hyperparameters (SageMaker passes them as arguments).

    ``n_estimators`` is the most rounds; with ``validation_fraction`` > 0 a seeded share
    of the learners (groups) is held out, boosting stops once their NDCG@10 has not
    improved for ``early_stopping_rounds``, and the ranker is refitted on every group
    with the rounds that scored best.
    """

    n_estimators: int = 500
    max_depth: int = 4
    learning_rate: float = 0.1
    min_child_weight: float = 20.0
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    objective: str = "rank:ndcg"
    candidates: int = 100
    folds: int = 5
    validation_fraction: float = 0.2
    early_stopping_rounds: int = 30
    seed: int = 42


class Ranker:
    """Scores candidate feature rows; higher is better."""

    def __init__(self, model: bytes) -> None:
        """From the bytes of an XGBoost model file (UBJSON, as ``save_raw("ubj")``)."""
        self._raw = bytes(model)
        self._native = NativeBooster(self._raw)
        names = self._native.feature_names
        if names is not None and names != FEATURE_NAMES:
            raise ValueError(
                f"ranker was trained on features {names}, serving computes {FEATURE_NAMES}"
            )

    @classmethod
    def from_booster(cls, booster: Any) -> Ranker:
        """From a trained ``xgboost.Booster``."""
        return cls(bytes(booster.save_raw("ubj")))

    @property
    def booster(self) -> Any:
        """The model as an ``xgboost.Booster``, for training-side inspection (imports xgboost)."""
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self._raw))
        return booster

    def num_boosted_rounds(self) -> int:
        return self._native.num_boosted_rounds()

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores [C] for feature rows [C, F] in FEATURE_NAMES order (NaN = missing).

        In-place prediction, single-threaded: a DMatrix per request would start
        XGBoost's thread pool on every call, which measured as most of a request's latency.
        """
        return self._native.predict(features)

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        layout = BundleLayout(directory)
        layout.ranker.write_bytes(self._raw)
        layout.ranker_meta.write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        return cls(BundleLayout(directory).ranker.read_bytes())


def fit_ranker(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, params: RankerParams
) -> Ranker:
    """Fit on rows grouped by learner (``groups`` = rows per learner, in order)."""
    rounds = params.n_estimators
    held = _held_groups(len(groups), params)
    if held.any() and not held.all():
        row_held = np.repeat(held, groups)
        model = _model(params, rounds, params.early_stopping_rounds)
        model.fit(
            _frame(features[~row_held]),
            labels[~row_held],
            qid=_qid(groups[~held]),
            eval_set=[(_frame(features[row_held]), labels[row_held])],
            eval_qid=[_qid(groups[held])],
            verbose=False,
        )
        rounds = int(model.best_iteration) + 1
    model = _model(params, rounds, None)
    model.fit(_frame(features), labels, qid=_qid(groups))
    return Ranker.from_booster(model.get_booster())


def _held_groups(n_groups: int, params: RankerParams) -> np.ndarray:
    if params.validation_fraction <= 0 or params.early_stopping_rounds <= 0 or n_groups < 10:
        return np.zeros(n_groups, dtype=bool)
    return np.asarray(
        np.random.default_rng(params.seed).random(n_groups) < params.validation_fraction
    )


def _qid(groups: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(groups)), groups)


def _model(params: RankerParams, rounds: int, early_stopping_rounds: int | None) -> Any:
    import xgboost as xgb

    return xgb.XGBRanker(
        n_estimators=rounds,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        objective=params.objective,
        tree_method="hist",
        random_state=params.seed,
        n_jobs=0,
        eval_metric="ndcg@10",
        early_stopping_rounds=early_stopping_rounds,
    )


def _frame(features: np.ndarray) -> Any:
    """XGBoost keeps column names from a DataFrame; they travel in the model file."""
    import pandas as pd

    return pd.DataFrame(features, columns=list(FEATURE_NAMES))
