"""The XGBoost learning-to-rank model over retrieval candidates.

Served from XGBoost's native model file (``ranker.ubj``); its feature order is
:data:`learnrec.features.ranking.FEATURE_NAMES`, checked on load so that a model trained
on other features is refused rather than fed the wrong columns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from learnrec.features.ranking import FEATURE_NAMES

RANKER_FILE = "ranker.ubj"
RANKER_META_FILE = "ranker.json"


@dataclass(frozen=True)
class RankerParams:
    """XGBoost hyperparameters (SageMaker passes them as arguments)."""

    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.1
    min_child_weight: float = 20.0
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    objective: str = "rank:ndcg"
    candidates: int = 100
    folds: int = 5
    seed: int = 42


class Ranker:
    """Scores candidate feature rows; higher is better."""

    def __init__(self, booster: xgb.Booster) -> None:
        names = booster.feature_names
        if names is not None and tuple(names) != FEATURE_NAMES:
            raise ValueError(
                f"ranker was trained on features {names}, serving computes {FEATURE_NAMES}"
            )
        self.booster = booster
        # Prediction on tiny per-request batches is fastest single-threaded.
        self.booster.set_param({"nthread": 1})

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores [C] for feature rows [C, F] in FEATURE_NAMES order.

        In-place prediction: a DMatrix per request would start XGBoost's thread pool on
        every call, which measured as most of a request's latency.
        """
        return np.asarray(
            self.booster.inplace_predict(features, missing=np.nan, validate_features=False),
            dtype=np.float32,
        )

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        self.booster.save_model(str(directory / RANKER_FILE))
        (directory / RANKER_META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        booster = xgb.Booster()
        booster.load_model(str(directory / RANKER_FILE))
        return cls(booster)


def fit_ranker(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, params: RankerParams
) -> Ranker:
    """Fit on rows grouped by learner (``groups`` = rows per learner, in order)."""
    model = xgb.XGBRanker(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        objective=params.objective,
        tree_method="hist",
        random_state=params.seed,
        n_jobs=0,
    )
    qid = np.repeat(np.arange(len(groups)), groups)
    model.fit(_frame(features), labels, qid=qid)
    return Ranker(model.get_booster())


def _frame(features: np.ndarray) -> Any:
    """XGBoost keeps column names from a DataFrame; they travel in the model file."""
    import pandas as pd

    return pd.DataFrame(features, columns=list(FEATURE_NAMES))


def params_json(params: RankerParams) -> dict[str, Any]:
    return asdict(params)
