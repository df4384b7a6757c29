"""Step ``evaluate``: the candidate, popularity, the tuned classic baselines (EASE and
implicit ALS) and the active model on the same learners.

All of them get each validation learner's whole history from the run's window (``fit`` and
``labels``) and are asked for k items the learner has not engaged with, as serving
would; the learner's ``validation`` interactions are the answers. The baselines tune
their hyperparameters on a split of ``fit`` and ``labels``, never on ``validation``. The result
(``evaluation.json``) holds the metrics, the gate's decision, the drift against the
active model and the profile the candidate leaves for the next run to compare against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnrec.bundle import EVALUATION_FILE, BundleError, BundleLayout, read_manifest
from learnrec.data.dataset import Dataset, SplitName, read_dataset
from learnrec.evaluation.baselines import rank_baselines
from learnrec.evaluation.metrics import evaluate_rankings
from learnrec.evaluation.offline import popularity_ranking, rank_with_bundle
from learnrec.evaluation.report import write_report
from learnrec.pipeline import drift
from learnrec.pipeline.build_dataset import SUMMARY_FILE
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.gate import decide
from learnrec.pipeline.run import RunContext
from learnrec.training.inputs import Histories

STEP = "evaluate"
DEFAULT_CANDIDATES = 100


@dataclass(frozen=True)
class Scored:
    """One model's top-k lists on the validation learners, and their ranker scores."""

    metrics: dict[str, float]
    scores: np.ndarray


def _candidates(bundle: Path) -> int:
    path = BundleLayout(bundle).ranking_summary
    if path.exists():
        return int(json.loads(path.read_text())["params"].get("candidates", DEFAULT_CANDIDATES))
    return DEFAULT_CANDIDATES


def score_bundle(
    bundle: Path, dataset: Dataset, history: pd.DataFrame, relevant: dict[str, set[str]], k: int
) -> Scored:
    """Retrieval, then the ranker, for every learner in ``relevant``; metrics at k."""
    users = sorted(relevant)
    ranked = rank_with_bundle(bundle, dataset, Histories.of(history), users, k, _candidates(bundle))
    metrics = evaluate_rankings(ranked.reranked, relevant, k, len(dataset.items))
    return Scored(metrics, ranked.ranker_scores.astype(np.float64))


def run_step(run: RunContext, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict[str, Any]:
    """The step's registered entry: the candidate against the model active now."""
    active, error = fetch_active(run)
    return evaluate(run, inputs["dataset"], inputs["bundle"], outputs["evaluation"], active, error)


def evaluate(
    run: RunContext,
    dataset_dir: Path,
    bundle: Path,
    out: Path,
    active_bundle: Path | None,
    active_error: str | None = None,
) -> dict[str, Any]:
    """Write ``evaluation.json`` into ``out``; ``active_bundle`` is None without an active model.

    A broken or missing active model is no reason to keep it: the candidate is then
    compared with popularity only, and ``active_error`` says so in the evaluation.
    """
    fit = read_dataset(dataset_dir / "fit")
    labels = read_dataset(dataset_dir / "labels").interactions
    validation = read_dataset(dataset_dir / "validation").interactions
    history = pd.concat([fit.interactions, labels], ignore_index=True)
    relevant = {str(u): set(g) for u, g in validation.groupby("user_id")["content_id"]}
    if not relevant:
        raise StepError(STEP, "the validation data is empty")
    k, metric = run.k, run.primary_metric
    try:
        candidate = score_bundle(bundle, fit, history, relevant, k)
    except (OSError, ValueError, KeyError) as error:
        raise StepError(STEP, f"cannot score the candidate bundle: {error}") from error
    popular = popularity_ranking(history, Histories.of(history), sorted(relevant), k)
    popularity = evaluate_rankings(popular, relevant, k, len(fit.items))
    split: SplitName = (
        "temporal" if run.split == "temporal" and history["ts"].notna().all() else "stratified"
    )
    fitted = rank_baselines(
        history, list(fit.items["content_id"]), sorted(relevant), k, split, run.seed
    )
    baselines = {
        name: evaluate_rankings(recs, relevant, k, len(fit.items))
        for name, recs in fitted.rankings.items()
    }
    active: Scored | None = None
    reference = None
    if active_bundle is not None:
        try:
            active = score_bundle(active_bundle, fit, history, relevant, k)
            reference = read_manifest(active_bundle, verify=False).get("drift", {}).get("profile")
        except (OSError, ValueError, KeyError, BundleError) as error:
            active_error = f"the active model {run.active_version} could not be scored: {error}"
    gate = decide(
        metric,
        candidate.metrics,
        popularity,
        None if active is None else active.metrics,
        run.tolerance,
        run.active_version,
        baselines,
        run.baseline_tolerance,
    )
    features = drift.feature_values(history)
    report = drift.drift_report(reference, active.scores if active else [], features)
    report["profile"] = drift.build_profile(candidate.scores, features)
    summary_path = dataset_dir / SUMMARY_FILE
    evaluation = {
        "run_id": run.run_id,
        "version": run.version,
        "mode": run.mode.value,
        "k": k,
        "primary_metric": metric,
        "users": len(relevant),
        "active_version": run.active_version,
        "active_error": active_error,
        "models": {
            "candidate": _clean(candidate.metrics),
            "popularity": _clean(popularity),
            **{name: _clean(metrics) for name, metrics in baselines.items()},
            "active": None if active is None else _clean(active.metrics),
        },
        "baselines": {
            name: {key: value for key, value in params.items() if key != "search"}
            for name, params in fitted.params.items()
        },
        "baselines_unavailable": fitted.unavailable,
        "gate": gate.to_json(),
        "drift": report,
        "data": json.loads(summary_path.read_text()) if summary_path.exists() else {},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2))
    samples = {"candidate": candidate.scores}
    if active is not None:
        samples[f"active {run.active_version}"] = active.scores
    write_report(out, _report_metrics(evaluation, len(fit.items)), samples, _notes(evaluation))
    return evaluation


def _report_metrics(evaluation: dict[str, Any], n_items: int) -> dict[str, Any]:
    """The evaluation in the shape of the offline report, for people to read."""
    models = evaluation["models"]
    named = {
        name: metrics
        for name, metrics in models.items()
        if name not in {"candidate", "active"} and metrics is not None
    }
    named["candidate"] = models["candidate"]
    if models["active"] is not None:
        named[f"active {evaluation['active_version']}"] = models["active"]
    return {
        "dataset": f"retraining run {evaluation['version']} ({evaluation['mode']})",
        "split": "validation",
        "k": evaluation["k"],
        "n_users": evaluation["users"],
        "n_items": n_items,
        "models": named,
    }


def _notes(evaluation: dict[str, Any]) -> list[str]:
    gate = evaluation["gate"]
    verdict = "passes" if gate["passed"] else "fails"
    notes = [f"Gate {verdict}: {gate['reason']}"]
    score = evaluation["drift"].get("model_drift_score")
    notes.append(
        "Drift: " + (evaluation["drift"].get("note") or "no active model to compare with")
        if score is None
        else f"Drift (largest PSI vs the active model): {score:.3f}"
    )
    for name, params in evaluation.get("baselines", {}).items():
        chosen = ", ".join(
            f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in params.items()
        )
        notes.append(f"{name} tuned on a split of the training data: {chosen}")
    for name, why in evaluation.get("baselines_unavailable", {}).items():
        notes.append(f"{name} not compared (the gate does without it): {why}")
    if evaluation["active_error"]:
        notes.append(str(evaluation["active_error"]))
    return notes


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in metrics.items() if name != "users"}


def fetch_active(run: RunContext) -> tuple[Path | None, str | None]:
    """The active bundle as a folder (None without one), and why it could not be fetched."""
    if run.active_version is None:
        return None, None
    from learnrec.serving.model_store import ModelStoreError, store_from_url

    try:
        return store_from_url(run.model_store_url).fetch(run.active_version), None
    except ModelStoreError as error:
        return None, f"the active model {run.active_version} could not be fetched: {error}"
