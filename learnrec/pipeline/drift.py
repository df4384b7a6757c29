"""Drift: how far a run's data and scores moved from the active model's.

Each version keeps a *profile* in its manifest: for its ranker scores (on its own
validation learners) and for a few key features of its data, the decile edges and the
share of values between them. A later run bins its own values with the active version's
edges and measures the population stability index against the stored shares:

    PSI = sum over bins of (new - reference) * ln(new / reference)

Below 0.1 is noise, 0.1-0.2 a shift worth a look, above 0.2 a real change (the alarm
threshold, ``learnrec.stages.Alarms.drift_score``). ``model_drift_score`` is the largest
PSI of the score and feature distributions: one number an alarm can watch, with the
parts kept in the manifest to say what moved.

The score PSI compares like with like: the *active* model's scores on the new validation
learners against the active model's scores on its own validation learners, so it shows
the population the model now faces, not the difference between two models' scales.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from learnrec import metric_names

if TYPE_CHECKING:  # the pipeline Lambda scores drift without pandas in its layers
    import pandas as pd

METRIC_NAME = metric_names.DRIFT
METRIC_NAMESPACE = metric_names.NAMESPACE
BINS = 10
EPSILON = 1e-4  # floor for empty bins: PSI is infinite otherwise

FloatArray = npt.NDArray[np.float64]


def profile(values: npt.ArrayLike, bins: int = BINS) -> dict[str, list[float]]:
    """Interior quantile edges of ``values`` and the share of values in each bin."""
    data = _finite(values)
    if data.size == 0:
        return {"edges": [], "fractions": []}
    edges = np.unique(np.quantile(data, np.linspace(0, 1, bins + 1)[1:-1]))
    return {"edges": edges.tolist(), "fractions": _fractions(data, edges).tolist()}


def psi(reference: Mapping[str, list[float]], values: npt.ArrayLike) -> float | None:
    """PSI of ``values`` against a stored :func:`profile`; None if either side is empty."""
    data = _finite(values)
    expected = np.asarray(reference.get("fractions", []), dtype=np.float64)
    if data.size == 0 or expected.size == 0:
        return None
    actual = _fractions(data, np.asarray(reference["edges"], dtype=np.float64))
    expected = np.maximum(expected, EPSILON)
    actual = np.maximum(actual, EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _finite(values: npt.ArrayLike) -> FloatArray:
    data = np.asarray(values, dtype=np.float64).ravel()
    return data[np.isfinite(data)]


def _fractions(data: FloatArray, edges: FloatArray) -> FloatArray:
    # Bin i holds edges[i-1] < x <= edges[i]; outer bins are open-ended.
    counts = np.bincount(np.searchsorted(edges, data, side="left"), minlength=len(edges) + 1)
    return counts.astype(np.float64) / max(1, data.size)


def feature_values(interactions: pd.DataFrame) -> dict[str, FloatArray]:
    """Key features of a window's interactions, each a distribution over rows.

    ``learner_activity``: interactions per learner (who is using the platform);
    ``item_popularity``: per interaction, the log count of its item (how concentrated
    attention is); ``engagement``: the strength of each interaction (how deep learners go).
    """
    if interactions.empty:
        return {
            "learner_activity": np.zeros(0),
            "item_popularity": np.zeros(0),
            "engagement": np.zeros(0),
        }
    per_item = interactions["content_id"].map(interactions["content_id"].value_counts())
    return {
        "learner_activity": interactions.groupby("user_id").size().to_numpy(np.float64),
        "item_popularity": np.log1p(per_item.to_numpy(np.float64)),
        "engagement": interactions["weight"].to_numpy(np.float64),
    }


def build_profile(scores: npt.ArrayLike, features: Mapping[str, npt.ArrayLike]) -> dict[str, Any]:
    """What a version stores about itself for later runs to compare against."""
    return {
        "score": profile(scores),
        "features": {name: profile(values) for name, values in features.items()},
    }


def drift_report(
    reference: Mapping[str, Any] | None,
    active_scores: npt.ArrayLike,
    features: Mapping[str, npt.ArrayLike],
) -> dict[str, Any]:
    """PSI per distribution against the active version's profile, and their maximum."""
    if not reference:
        return {
            "model_drift_score": None,
            "psi": {},
            "note": "no active model profile to compare with (first version)",
        }
    parts: dict[str, float | None] = {"score": psi(reference.get("score", {}), active_scores)}
    stored = reference.get("features", {})
    for name, values in features.items():
        parts[f"feature:{name}"] = psi(stored.get(name, {}), values)
    rounded = {name: None if v is None else round(v, 6) for name, v in parts.items()}
    known = [v for v in rounded.values() if v is not None]
    return {"model_drift_score": max(known) if known else None, "psi": rounded}


def publish(cloudwatch: Any, score: float, stage: str) -> None:
    """``model_drift_score`` to CloudWatch (namespace ``learnrec``, dimensions service, stage)."""
    cloudwatch.put_metric_data(
        Namespace=METRIC_NAMESPACE,
        MetricData=[
            {
                "MetricName": METRIC_NAME,
                "Dimensions": [
                    {"Name": "service", "Value": "pipeline"},
                    {"Name": "stage", "Value": stage},
                ],
                "Value": float(score),
                "Unit": "None",
            }
        ],
    )
