"""The closing summary of a run: the version, how it compares, and what happened to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METRICS = ("ndcg", "precision", "recall", "map", "coverage")
BASELINES = ("popularity", "ease", "als")


def format_summary(evaluation: Mapping[str, Any], promotion: Mapping[str, Any]) -> str:
    k = evaluation["k"]
    models = evaluation["models"]
    active = models.get("active")
    active_name = f"active {evaluation['active_version']}" if active else "active (none)"
    baselines = [name for name in BASELINES if models.get(name)]
    lines = [
        f"version {evaluation['version']} ({evaluation['mode']} retrain, run "
        f"{evaluation['run_id']}), {evaluation['users']} validation learners",
        f"  {'metric':<14}{'candidate':>11}"
        + "".join(f"{name:>11}" for name in baselines)
        + f"  {active_name}",
    ]
    for name in METRICS:
        metric = f"{name}@{k}"
        cells = [models["candidate"].get(metric), *(models[b].get(metric) for b in baselines)]
        row = "".join(f"{value:>11.4f}" if value is not None else f"{'-':>11}" for value in cells)
        theirs = f"{active[metric]:.4f}" if active and metric in active else "-"
        marker = "  <- gate" if metric == evaluation["primary_metric"] else ""
        lines.append(f"  {metric:<14}{row} {theirs:>10}{marker}")
    if evaluation.get("active_error"):
        lines.append(f"  note: {evaluation['active_error']}")
    drift = evaluation.get("drift", {})
    score = drift.get("model_drift_score")
    if score is None:
        lines.append(f"  drift: {drift.get('note', 'not measured')}")
    else:
        parts = ", ".join(
            f"{name} {value:.3f}"
            for name, value in drift.get("psi", {}).items()
            if value is not None
        )
        lines.append(f"  drift: model_drift_score {score:.3f} (PSI {parts})")
    if promotion.get("promoted"):
        lines.append(f"  PROMOTED: {promotion['reason']}")
    else:
        lines.append(
            f"  NOT PROMOTED: {promotion['reason']}; active model stays "
            f"{promotion.get('active') or '(none)'}"
        )
    return "\n".join(lines)
