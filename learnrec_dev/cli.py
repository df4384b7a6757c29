"""The ``learnrec`` command line: data, training, benchmarks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from learnrec.data.importers import DataFormatError
from learnrec.deploy.cli import add_deploy_commands
from learnrec.events.report_cli import add_report_commands
from learnrec.pipeline.cli import add_models_commands, add_pipeline_commands
from learnrec.privacy.cli import add_privacy_commands
from learnrec.schemas import describe_errors
from learnrec.serving.auth_cli import add_auth_commands
from learnrec.serving.batch_cli import add_recommend_commands
from learnrec.serving.openapi_doc import add_docs_command
from learnrec.storage.cli import add_db_commands
from learnrec_dev.benchmark.batch import add_batch_command
from learnrec_dev.benchmark.ingest import add_ingest_command
from learnrec_dev.benchmark.load import add_load_command
from learnrec_dev.benchmark.package import add_package_command
from learnrec_dev.benchmark.serving import add_serving_command
from learnrec_dev.local import aws
from learnrec_dev.local.cli import add_local_commands

SEPARATORS = {"TAB": "\t", "COMMA": ","}


def _generate(args: argparse.Namespace) -> int:
    from learnrec.data.generator import generate, write_sample

    data = generate(users=args.users, items=args.items, events=args.events, seed=args.seed)
    paths = write_sample(data, args.out)
    print(json.dumps({k: str(v) for k, v in paths.items()} | {"events": len(data.events)}))
    return 0


def _load_catalog(args: argparse.Namespace) -> int:
    from learnrec.config import get_settings
    from learnrec.data.generator import read_sample_models
    from learnrec.identity import UserIdHasher, user_id_hash_key
    from learnrec.storage import CatalogStore, make_engine
    from learnrec.storage.migrate import upgrade

    items, learners = read_sample_models(args.data)
    # Profiles are stored under the hashed id, like every other learner record.
    hasher = UserIdHasher(user_id_hash_key(get_settings()))
    learners = [lr.model_copy(update={"user_id": hasher(lr.user_id)}) for lr in learners]
    store = CatalogStore(make_engine(args.database_url))
    upgrade(store.engine)  # a local set-up step: the tables are the migrations' to make
    print(
        json.dumps(
            {"items": store.upsert_items(items), "learners": store.upsert_learners(learners)}
        )
    )
    return 0


def _quality(args: argparse.Namespace) -> int:
    from learnrec_dev.benchmark.quality import Source, run_quality

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    source = Source(
        dataset=args.dataset,
        interactions=args.interactions,
        sep=SEPARATORS[args.sep] if args.sep else None,
        columns=columns,
        min_rating=args.min_rating,
        seed=args.seed,
    )
    metrics = run_quality(
        source,
        args.out,
        args.split,
        args.test_fraction,
        args.seed,
        args.k,
        progress=not args.quiet,
        tune_towers=args.tune_towers,
        new_item_fraction=args.new_items,
    )
    k = metrics["k"]
    print(
        f"\n{metrics['dataset']}: {metrics['n_users']} test learners, "
        f"{metrics['n_items']} items, k={k}"
    )
    for name, values in metrics["models"].items():
        cells = "  ".join(f"{key}={value:.4f}" for key, value in values.items())
        print(f"  {name:<17} {cells}")
    for slots, row in metrics.get("new_item_slots", {}).get("by_slots", {}).items():
        cells = "  ".join(f"{key}={value:.4f}" for key, value in row.items())
        print(f"  new-item slots {slots}: {cells}")
    print(f"metrics: {args.out / 'metrics.json'}\nreport:  {args.out / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learnrec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="sample data").add_subparsers(
        dest="action", required=True
    )
    gen = data.add_parser("generate", help="write a synthetic catalog, learners and events")
    gen.add_argument("--users", type=int, default=1000)
    gen.add_argument("--items", type=int, default=500)
    gen.add_argument("--events", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", type=Path, required=True)
    gen.set_defaults(func=_generate)

    catalog = commands.add_parser("catalog", help="the catalog database").add_subparsers(
        dest="action", required=True
    )
    load = catalog.add_parser("load", help="load a sample folder's catalog and learners")
    load.add_argument("--data", type=Path, required=True, help="folder written by data generate")
    load.add_argument("--database-url", default=None, help="SQLAlchemy URL (env DATABASE_URL)")
    load.set_defaults(func=_load_catalog)

    add_auth_commands(commands)
    add_report_commands(commands)
    add_pipeline_commands(commands, prepare_aws=aws.prepare_stage)
    add_models_commands(commands)
    add_local_commands(commands)
    add_deploy_commands(commands)
    add_docs_command(commands)
    add_db_commands(commands)
    add_privacy_commands(commands)
    add_recommend_commands(commands)

    bench = commands.add_parser("benchmark", help="measure").add_subparsers(
        dest="kind", required=True
    )
    quality = bench.add_parser(
        "quality", help="offline metrics against popularity and tuned EASE and ALS baselines"
    )
    source = quality.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=["sample", "mooccube"])
    source.add_argument("--interactions", type=Path, help="CSV or TSV of user,item[,rating][,ts]")
    quality.add_argument("--sep", choices=sorted(SEPARATORS), help="default: guess from the file")
    quality.add_argument("--columns", help="roles of the columns, e.g. user,item,rating,timestamp")
    quality.add_argument("--min-rating", type=float, help="ratings below this are not positives")
    quality.add_argument("--split", choices=["stratified", "temporal"], default="stratified")
    quality.add_argument("--test-fraction", type=float, default=0.25)
    quality.add_argument("--seed", type=int, default=42)
    quality.add_argument("--k", type=int, default=10)
    quality.add_argument("--out", type=Path, required=True)
    quality.add_argument("--quiet", action="store_true", help="no progress bars")
    quality.add_argument(
        "--tune-towers",
        action="store_true",
        help="choose the towers' L2 and temperature on validation (six extra trainings)",
    )
    quality.add_argument(
        "--new-items",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="hold this share of the test's items out of training, as items added since, "
        "to measure the new-item slots (default 0: only items the split leaves untrained)",
    )
    quality.set_defaults(func=_quality)
    add_serving_command(bench)
    add_load_command(bench)
    add_package_command(bench)
    add_ingest_command(bench)
    add_batch_command(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "kind", None) == "quality":
        if args.interactions is None and (args.sep or args.columns or args.min_rating is not None):
            parser.error("--sep, --columns and --min-rating go with --interactions")
        if not 0 < args.test_fraction < 1:
            parser.error("--test-fraction must be between 0 and 1")
        if args.k < 1:
            parser.error("--k must be at least 1")
    try:
        return int(args.func(args))
    except DataFormatError as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"learnrec: invalid data: {describe_errors(error)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as error:
        print(f"learnrec: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
