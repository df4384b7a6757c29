"""``learnrec recommend batch``: the batch recommendations job from the command line.

It builds what the API builds from the same settings (the model store's active version,
the experiment, the user-id hash key, the database) but no token verifier or event
sink, which a batch job has no use for. The active version is read once: every row of a
run comes from the same model, even if a promotion lands meanwhile.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from learnrec.serving.batch import DEFAULT_PART_SIZE, BatchError


def add_recommend_commands(commands: argparse._SubParsersAction[Any]) -> None:
    recommend = commands.add_parser("recommend", help="recommendations outside the API")
    actions = recommend.add_subparsers(dest="action", required=True)
    batch = actions.add_parser(
        "batch", help="every learner's top k with reasons, as JSON lines or Parquet"
    )
    batch.add_argument(
        "--out", required=True, help="a folder, or s3://bucket/prefix/ (parts + manifest.json)"
    )
    batch.add_argument(
        "--learners",
        type=Path,
        help="a file of raw platform ids, one a line (default: every learner in the database)",
    )
    batch.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    batch.add_argument("--k", type=int, default=10)
    batch.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE)
    batch.add_argument("--database-url", default=None, help="SQLAlchemy URL (env DATABASE_URL)")
    batch.set_defaults(func=_batch_command)


def _batch_command(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import InterfaceError, OperationalError

    from learnrec.storage.schema import SchemaNotReadyError

    try:
        summary = batch_from_settings(
            args.out, args.learners, args.format, args.k, args.part_size, args.database_url
        )
    except (OperationalError, InterfaceError) as error:
        print(f"learnrec: the database cannot be reached: {error.orig}", file=sys.stderr)
        return 1
    except SchemaNotReadyError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def batch_from_settings(
    out: str,
    learner_file: Path | None,
    fmt: str,
    k: int,
    part_size: int,
    database_url_override: str | None = None,
) -> dict[str, Any]:
    """Run the batch job against the stage the environment describes; the manifest."""
    from learnrec.config import get_settings
    from learnrec.events.experiments import Experiment, PinnedModels
    from learnrec.identity import UserIdHasher, user_id_hash_key
    from learnrec.serving.batch import (
        Learners,
        check_destination,
        may_write_raw_ids,
        read_learner_file,
        run_batch,
        sink_for,
    )
    from learnrec.serving.context import load_recommender
    from learnrec.serving.core import MAX_K, pick_recommender
    from learnrec.serving.model_store import ActiveModel, store_from_url
    from learnrec.storage import make_engine
    from learnrec.storage.bulk import known_learners
    from learnrec.storage.schema import require_schema
    from learnrec.storage.url import database_url

    if fmt not in ("jsonl", "parquet"):
        raise BatchError(f"unknown format {fmt!r}: jsonl or parquet")
    if not 1 <= k <= MAX_K or part_size < 1:
        raise BatchError(f"k must be between 1 and {MAX_K}, and the part size at least 1")
    settings = get_settings()
    hasher = UserIdHasher(user_id_hash_key(settings))
    if learner_file is not None and not learner_file.is_file():
        raise BatchError(f"{learner_file}: no such file")
    check_destination(out, settings.s3_bucket)
    sink = sink_for(out)
    models = store_from_url(settings.model_store)
    # Checked once: a promotion during the run must not split it across two models.
    active = ActiveModel(models, lambda path: load_recommender(path, settings), math.inf)
    if active.get() is None:
        raise BatchError(f"no model to recommend with: {active.error or 'none is active'}")
    experiment = Experiment.parse(settings.experiment_variants, settings.experiment_name)
    pinned = None
    if experiment is not None:
        pinned = PinnedModels(models.fetch, lambda path: load_recommender(path, settings))
    engine = make_engine(database_url_override or database_url(settings), settings=settings)
    try:
        require_schema(engine)
        learners = (
            read_learner_file(learner_file, hasher)
            if learner_file is not None
            else Learners(keys=known_learners(engine))
        )
        summary = run_batch(
            engine,
            lambda key: pick_recommender(active, experiment, pinned, key),
            learners,
            sink,
            k=k,
            fmt="parquet" if fmt == "parquet" else "jsonl",
            part_size=part_size,
            raw_ids=may_write_raw_ids(out, settings.s3_bucket),
        )
    finally:
        engine.dispose()
    return summary.to_json()
