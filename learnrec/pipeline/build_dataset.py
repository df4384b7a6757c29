"""Step ``build_dataset``: archived events over the run's window, joined with the catalog.

Output (the ``dataset`` artifact): three dataset folders cut from one window,
``fit/`` (what the retrieval model learns from), ``labels/`` (what the ranker learns to
find, after ``fit`` in time) and ``validation/`` (the latest interactions of each
learner, held out from both models and used to compare the candidate with popularity and
with the active model), plus ``summary.json`` (window, counts, split).

In ranking mode the run keeps the active model's towers: their files are copied from the
active bundle into the ``retrieval`` artifact, so the run does not depend on what happens
to the active pointer while it runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from learnrec.bundle import NOT_RETRIEVAL_FILES
from learnrec.data.dataset import (
    Dataset,
    SplitName,
    interactions_from_events,
    items_frame,
    learners_frame,
    make_dataset,
    split_interactions,
    write_dataset,
)
from learnrec.evaluation.offline import RANKER_FRACTION
from learnrec.events.archive import read_events
from learnrec.pipeline.definition import Mode
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.run import RunContext
from learnrec.schemas import ContentItem, Learner

STEP = "build_dataset"
SUMMARY_FILE = "summary.json"
PARTS = ("fit", "labels", "validation")
EVENT_FIELDS = ("user_id", "content_id", "event_type", "ts")


def load_catalog(source: str | None) -> tuple[list[ContentItem], list[Learner], set[str]]:
    """Items, learner profiles and untracked learners (hashed ids).

    From a sample folder (which has no untracked learners) or a database (URL or
    DATABASE_URL), where the tombstones say who opted out or was erased.
    """
    if source and Path(source).is_dir():
        from learnrec.data.generator import read_sample_models

        return (*read_sample_models(Path(source)), set())
    from learnrec.storage import CatalogStore, PrivacyStore, make_engine

    engine = make_engine(source)
    try:
        store = CatalogStore(engine)
        untracked = PrivacyStore(engine).untracked()
        learners = [
            learner for learner in store.list_learners() if learner.user_id not in untracked
        ]
        return store.list_items(), learners, untracked
    finally:
        engine.dispose()


def events_frame(events: list[dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """The archived events as a frame, and how many lacked a field training needs."""
    frame = pd.DataFrame(events, columns=list(EVENT_FIELDS))
    complete = frame.dropna(subset=list(EVENT_FIELDS))
    return complete, len(frame) - len(complete)


def run_step(run: RunContext, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict[str, Any]:
    """The step's registered entry: it reads the archive and the catalog, no artifact."""
    import boto3

    return build_dataset(run, boto3.client("s3"), outputs)


def build_dataset(run: RunContext, s3: Any, outputs: dict[str, Path]) -> dict[str, Any]:
    """Write the ``dataset`` artifact (and ``retrieval`` in ranking mode); the summary."""
    events = list(read_events(s3, run.bucket, run.window_start, run.window_end))
    if not events:
        raise StepError(STEP, f"no events in the window {run.window_label} under {run.events_uri}")
    items, learners, untracked = load_catalog(run.catalog)
    frame, incomplete = events_frame(events)
    # Learners who opted out or were erased are never learned from, whatever the archive
    # still holds (the erasure sweep removes an erased learner's events within its bound).
    is_untracked = frame["user_id"].isin(untracked)
    frame = frame[~is_untracked]
    interactions = interactions_from_events(frame)
    if interactions.empty:
        raise StepError(
            STEP,
            f"{len(events)} events in the window {run.window_label}, but none is a positive "
            "engagement of a tracked learner (only impressions, dislikes or untracked learners)",
        )
    if not items:
        raise StepError(STEP, f"the catalog is empty ({run.catalog or 'DATABASE_URL'})")
    known = {item.content_id for item in items}
    unknown_item = ~interactions["content_id"].isin(known)
    interactions = interactions[~unknown_item].reset_index(drop=True)
    dataset = make_dataset(
        f"events {run.window_label}", interactions, items_frame(items), learners_frame(learners)
    )
    fit, labels, validation = _split(run, dataset)
    dataset_dir = outputs["dataset"]
    for name, part in zip(PARTS, (fit, labels, validation), strict=True):
        write_dataset(dataset, dataset_dir / name, interactions=part)
    summary = {
        "window": {"from": run.window_start.isoformat(), "to": run.window_end.isoformat()},
        "events": len(events),
        "incomplete_events": incomplete,
        "untracked_learners_events": int(is_untracked.sum()),
        "interactions": len(interactions),
        "interactions_with_unknown_items": int(unknown_item.sum()),
        "learners": int(interactions["user_id"].nunique()),
        "items": len(items),
        "split": run.split,
        "parts": {
            name: len(part) for name, part in zip(PARTS, (fit, labels, validation), strict=True)
        },
    }
    (dataset_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if run.mode is Mode.RANKING:
        summary["retrieval_from"] = copy_active_retrieval(run, outputs["retrieval"])
    return summary


def _split(run: RunContext, dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    method: SplitName = (
        "temporal" if run.split == "temporal" and dataset.has_timestamps else "stratified"
    )
    try:
        outer = split_interactions(dataset.interactions, method, run.validation_fraction, run.seed)
        inner = split_interactions(outer.train, method, RANKER_FRACTION, run.seed + 1)
    except ValueError as error:
        raise StepError(STEP, f"cannot split the window's interactions: {error}") from error
    if outer.test.empty or inner.test.empty:
        raise StepError(
            STEP,
            f"too few interactions in the window {run.window_label} "
            f"({len(dataset.interactions)}) to hold out validation and ranking data: "
            "every learner needs at least two",
        )
    return inner.train, inner.test, outer.test


def copy_active_retrieval(run: RunContext, target: Path) -> str:
    """The active bundle's retrieval files into ``target``; the version they came from."""
    if run.active_version is None:
        raise StepError(
            STEP,
            "ranking mode keeps the active model's towers, but there is no active model: "
            "run a full retrain first",
        )
    from learnrec.serving.model_store import ModelStoreError, store_from_url

    try:
        bundle = store_from_url(run.model_store_url).fetch(run.active_version)
    except ModelStoreError as error:
        raise StepError(STEP, f"cannot fetch the active model: {error}") from error
    target.mkdir(parents=True, exist_ok=True)
    for path in bundle.iterdir():
        if path.name in NOT_RETRIEVAL_FILES:
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target / path.name)
    return run.active_version
