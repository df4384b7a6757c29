"""``learnrec pipeline run`` and ``learnrec models list|show|promote|rollback``.

The model store is, in this order: ``--model-store``; ``MODEL_STORE`` when set; the
stage's ``s3://<data bucket>/models`` when ``AWS_ENDPOINT_URL`` points at a local AWS;
the settings' default folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from learnrec.pipeline.definition import Mode
from learnrec.stages import STAGES, ResourceNames


def _hyperparameter(text: str) -> tuple[str, str, str]:
    target, sep, value = text.partition("=")
    step, dot, name = target.partition(".")
    if not (sep and dot and step and name):
        raise argparse.ArgumentTypeError(f"expected STEP.NAME=VALUE, got {text!r}")
    return step, name, value


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (e.g. Z)")
    return moment


def _stage(text: str) -> str:
    """A stage name: dev, staging, prod, or a scratch stage (letters and digits)."""
    if not text.isalnum() or not text.islower():
        raise argparse.ArgumentTypeError(f"stage names are lowercase letters and digits: {text!r}")
    return text


def _run(args: argparse.Namespace) -> int:
    from learnrec.pipeline.errors import StepError
    from learnrec.pipeline.local import run_pipeline
    from learnrec.pipeline.run import RunError, RunRequest
    from learnrec.pipeline.summary import format_summary

    overrides: dict[str, dict[str, str]] = {}
    for step, name, value in args.hyperparameter:
        overrides.setdefault(step, {})[name] = value
    try:
        request = RunRequest(
            mode=Mode(args.only) if args.only else Mode.FULL,
            stage=args.stage,
            window_days=args.window_days,
            window_end=args.window_end,
            hyperparameters=overrides,
            tolerance=args.tolerance,
            baseline_tolerance=args.baseline_tolerance,
            catalog=str(args.data) if args.data else args.database_url,
        )
        request.validate()
    except RunError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2
    args.prepare_aws(args.stage, sys.stdout)
    try:
        outcome = run_pipeline(request, args.workdir, verbose=args.verbose)
    except StepError as error:
        print(
            f"learnrec: pipeline stopped at {error}\nthe active model is unchanged",
            file=sys.stderr,
        )
        return 1
    print()
    print(format_summary(outcome.evaluation, outcome.promotion))
    return 0


def add_pipeline_commands(commands: Any, prepare_aws: Callable[[str, TextIO], None]) -> None:
    """``pipeline run``; ``prepare_aws(stage, out)`` makes the stage's AWS answer first (the
    command line passes the local AWS's, so this module never imports the workshop)."""
    pipeline = commands.add_parser("pipeline", help="the retraining pipeline").add_subparsers(
        dest="action", required=True
    )
    run = pipeline.add_parser("run", help="run every step locally, against the local AWS")
    run.add_argument(
        "--only",
        choices=[Mode.RANKING.value],
        help="ranking: keep the active towers, rebuild the index, retrain the ranker",
    )
    run.add_argument("--stage", type=_stage, default="dev", help=f"one of {STAGES} or scratch")
    run.add_argument("--window-days", type=float, default=28.0, help="days of events (28)")
    run.add_argument("--window-end", type=_time, help="end of the window (default: now)")
    run.add_argument("--data", type=Path, help="catalog from a sample folder, not the database")
    run.add_argument("--database-url", help="catalog database (env DATABASE_URL)")
    run.add_argument(
        "--hyperparameter",
        "-H",
        type=_hyperparameter,
        action="append",
        default=[],
        metavar="STEP.NAME=VALUE",
        help="e.g. train_retrieval.epochs=5 (repeatable)",
    )
    run.add_argument(
        "--tolerance", type=float, default=0.01, help="gate: ndcg@k it may lose to the active model"
    )
    run.add_argument(
        "--baseline-tolerance",
        type=float,
        default=0.02,
        help="gate: ndcg@k it may lose to the best of the ease and als baselines (0.02)",
    )
    run.add_argument("--workdir", type=Path, default=Path("build/pipeline"))
    run.add_argument("--verbose", action="store_true", help="show the jobs' output")
    run.set_defaults(func=_run, prepare_aws=prepare_aws)


# ---------------------------------------------------------------------------- models


def model_store_url(explicit: str | None, stage: str) -> str:
    from learnrec.config import get_settings

    settings = get_settings()
    if explicit:
        return explicit
    if "model_store" in settings.model_fields_set:
        return settings.model_store
    if os.environ.get("AWS_ENDPOINT_URL"):
        return ResourceNames(stage).model_store_url
    return settings.model_store


def _store(args: argparse.Namespace) -> Any:
    from learnrec.serving.model_store import store_from_url

    return store_from_url(model_store_url(args.model_store, args.stage))


def _list(args: argparse.Namespace) -> int:
    from learnrec.bundle import BundleLayout

    store = _store(args)
    pointer = store.pointer()
    rows = []
    for version in store.versions():
        manifest = json.loads(BundleLayout(store.fetch(version)).manifest.read_text())
        metrics = manifest.get("metrics", {})
        metric = metrics.get("primary_metric")
        candidate = metrics.get("candidate", {})
        rows.append(
            {
                "version": version,
                "active": version == pointer.active,
                "created": manifest.get("created"),
                "metric": metric,
                "value": candidate.get(metric) if metric else None,
                "drift": (manifest.get("drift") or {}).get("model_drift_score"),
            }
        )
    if args.json:
        print(json.dumps({"active": pointer.active, "versions": rows}, indent=2))
        return 0
    if not rows:
        print("no model versions")
        return 0
    for row in rows:
        mark = "*" if row["active"] else " "
        quality = f"{row['metric']}={row['value']:.4f}" if row["value"] is not None else ""
        drift = f"drift={row['drift']:.3f}" if row["drift"] is not None else ""
        print(f"{mark} {row['version']}  {row['created'] or '':<28} {quality:<18} {drift}")
    print(f"active: {pointer.active or '(none)'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from learnrec.bundle import read_manifest
    from learnrec.serving.model_store import ModelStoreError

    store = _store(args)
    try:
        manifest = read_manifest(store.fetch(args.version), verify=False)
    except ModelStoreError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2
    drift = dict(manifest.get("drift") or {})
    drift.pop("profile", None)  # decile tables: for the next run, not for people
    shown = {**manifest, "drift": drift, "files": len(manifest.get("files", {}))}
    shown["active"] = store.pointer().active == args.version
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from learnrec.config import get_settings
    from learnrec.pipeline.lifecycle import LifecycleError, activate, alias_swap

    try:
        pointer = activate(_store(args), args.version, alias_swap(get_settings()))
    except LifecycleError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2
    print(json.dumps(pointer.to_json()))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from learnrec.config import get_settings
    from learnrec.pipeline.lifecycle import LifecycleError, alias_swap, go_back

    try:
        pointer = go_back(_store(args), alias_swap(get_settings()))
    except LifecycleError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2
    print(json.dumps(pointer.to_json()))
    return 0


def add_models_commands(commands: Any) -> None:
    models = commands.add_parser("models", help="model versions").add_subparsers(
        dest="action", required=True
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model-store", help="folder or s3://bucket/prefix (env MODEL_STORE)")
    common.add_argument("--stage", type=_stage, default="dev", help=f"one of {STAGES} or scratch")
    listing = models.add_parser("list", parents=[common], help="versions, the active one marked")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    show = models.add_parser("show", parents=[common], help="a version's manifest")
    show.add_argument("version")
    show.set_defaults(func=_show)
    promote = models.add_parser("promote", parents=[common], help="make a version active")
    promote.add_argument("version")
    promote.set_defaults(func=_promote)
    back = models.add_parser("rollback", parents=[common], help="back to the previous version")
    back.set_defaults(func=_rollback)
