"""``learnrec benchmark quality``: offline metrics of every model against popularity and
the tuned classic baselines (EASE, implicit ALS).

Writes ``metrics.json`` (the figures), ``report.md`` with plots (for people), and the
trained model bundle under ``bundle/`` with its manifest, so a good run can be served.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnrec.bundle import new_version, write_manifest
from learnrec.data.dataset import Dataset, SplitName
from learnrec.data.generator import generate, to_dataset
from learnrec.data.importers import default_mooccube_root, load_mooccube, read_interactions_file
from learnrec.evaluation.exposure import exposure_comparison
from learnrec.evaluation.offline import TOWER_SEARCH, evaluate_offline
from learnrec.evaluation.report import write_report
from learnrec.ranking.model import RankerParams
from learnrec.training.retrieval import RetrievalParams

TARGET_NOTES = {
    "sample": "Targets: two_tower_ranker precision@10 > 0.25 and ndcg@10 > 0.40, "
    "both 15% above popularity; CTR lift >= +15%.",
    "mooccube": "Target: two_tower_ranker ndcg@10 >= 0.36 (popularity ~0.22, item-kNN ~0.33).",
}


@dataclass(frozen=True)
class Source:
    """Where the interactions come from: a named dataset or a file."""

    dataset: str | None = None
    interactions: Path | None = None
    sep: str | None = None
    columns: list[str] | None = None
    min_rating: float | None = None
    seed: int = 42

    def load(self) -> Dataset:
        if self.interactions is not None:
            return read_interactions_file(
                self.interactions, self.sep, self.columns, self.min_rating
            )
        if self.dataset == "sample":
            return to_dataset(generate(seed=self.seed), name="sample")
        if self.dataset == "mooccube":
            return load_mooccube(default_mooccube_root())
        raise ValueError(f"unknown dataset {self.dataset!r}: use sample or mooccube")


def run_quality(
    source: Source | Dataset,
    out: Path,
    split: SplitName = "stratified",
    test_fraction: float = 0.25,
    seed: int = 42,
    k: int = 10,
    progress: bool = True,
    retrieval_params: RetrievalParams | None = None,
    ranker_params: RankerParams | None = None,
    tune_towers: bool = False,
    new_item_fraction: float = 0.0,
) -> dict[str, Any]:
    started = time.perf_counter()
    dataset = source.load() if isinstance(source, Source) else source
    load_s = time.perf_counter() - started
    if split == "temporal" and not dataset.has_timestamps:
        raise ValueError(f"dataset {dataset.name!r} has no timestamps: use --split stratified")
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "bundle"
    result = evaluate_offline(
        dataset,
        bundle,
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        k=k,
        retrieval_params=retrieval_params,
        ranker_params=ranker_params,
        progress=progress,
        tower_search=TOWER_SEARCH if tune_towers else (),
        new_item_fraction=new_item_fraction,
    )
    metrics = result.metrics
    metrics["timings_s"] = {"load": round(load_s, 3), **metrics["timings_s"]}
    metrics["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    retrieval = json.loads((bundle / "retrieval.json").read_text())
    ranking = json.loads((bundle / "ranking.json").read_text())
    write_manifest(
        bundle,
        version=new_version(),
        parameters={
            "retrieval": retrieval["params"],
            "ranking": ranking["params"],
            "item_regression": ranking.get("regression", {}),
            "retrieval_search": metrics.get("retrieval_search", []),
            "baselines": _chosen(metrics["baselines"]),
        },
        metrics=metrics["models"],
        data={
            "dataset": dataset.name,
            "split": split,
            "test_fraction": test_fraction,
            "seed": seed,
        },
    )
    if result.train is not None and result.test is not None:
        started_exposure = time.perf_counter()
        metrics["new_item_slots"] = exposure_comparison(
            bundle, dataset, result.train, result.test, k, seed
        )
        metrics["timings_s"]["new_item_slots"] = round(time.perf_counter() - started_exposure, 3)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    notes = [TARGET_NOTES[dataset.name]] if dataset.name in TARGET_NOTES else []
    notes.append(
        f"Retrieval stopped after {retrieval['epochs_run']} epochs; ONNX parity max |diff| "
        + ", ".join(f"{p['tower']} {p['max_abs_diff']:.2g}" for p in retrieval["parity"])
        + f"; ranker candidate recall {ranking['candidate_recall']:.3f}."
    )
    notes.extend(_baseline_notes(metrics))
    notes.extend(_exposure_notes(metrics))
    write_report(out, metrics, result.score_samples, notes)
    return metrics


def _chosen(baselines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each baseline's chosen hyperparameters, without the search that found them."""
    return {name: {k: v for k, v in p.items() if k != "search"} for name, p in baselines.items()}


def _baseline_notes(metrics: dict[str, Any]) -> list[str]:
    notes = []
    trials = metrics.get("retrieval_search") or []
    if trials:
        key = f"ndcg@{metrics['k']}"
        best = max(trials, key=lambda t: t[key])
        notes.append(
            f"Towers: l2 {best['l2']:g}, temperature {best['temperature']:g} chosen among "
            f"{len(trials)} settings by retrieval {key} on the first cross-fitting fold's "
            "held-out labels ("
            + ", ".join(f"{t['l2']:g}/{t['temperature']:g}: {t[key]:.4f}" for t in trials)
            + ")."
        )
    notes += [
        f"{name} tuned on a validation split of the training part: "
        + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
        for name, params in _chosen(metrics.get("baselines", {})).items()
    ]
    notes.extend(
        f"{name} not compared: {why}"
        for name, why in metrics.get("baselines_unavailable", {}).items()
    )
    return notes


def _exposure_notes(metrics: dict[str, Any]) -> list[str]:
    """One line per slot count: what the served lists score with that many new-item slots."""
    comparison = metrics.get("new_item_slots")
    if not comparison:
        return []
    k = metrics["k"]
    held = metrics.get("held_out_new_items", 0)
    origin = (
        f"{held} test items held out of training" if held else "items without training interactions"
    )
    cells = "; ".join(
        f"{slots}: NDCG@{k} {row[f'ndcg@{k}']:.4f}, P@{k} {row[f'precision@{k}']:.4f}, "
        f"new-item recall@{k} {row[f'new_item_recall@{k}']:.3f}, "
        f"new items shown {row['new_items_shown']:.0%}"
        for slots, row in comparison["by_slots"].items()
    )
    return [
        f"New-item slots through the serving path ({comparison['users']} learners, "
        f"{comparison['new_items']} new items: {origin}, "
        f"{comparison['new_item_test_interactions']} test interactions with them), by slots "
        f"per list: {cells}."
    ]
