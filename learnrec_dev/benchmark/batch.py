"""``learnrec benchmark batch``: how fast batch recommendations go through many learners.

The data is the serving benchmark's (:mod:`learnrec_dev.benchmark.serving`): a synthetic
catalog, learners with profiles and Zipf-distributed histories in SQLite, and a bundle
of production size written by the training code's writers (random tower weights, a
ranker fitted on random labels). What is timed is the real job, :func:`run_batch`: the
bulk database reads, every learner through the recommend route's functions, the parts
and the manifest written to a folder. Setting the data up is not timed.

Writes ``DIR/batch.json`` and leaves the data under ``DIR/work/`` and the output under
``DIR/output/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from learnrec_dev.benchmark.arguments import at_least

RESULT_FILE = "batch.json"
TARGET_S_PER_100K = 600.0
"""100 000 learners within 10 minutes."""


def run_batch_benchmark(
    learners: int,
    out: Path,
    items: int = 10_000,
    fmt: str = "jsonl",
    k: int = 10,
    seed: int = 42,
    progress: bool = True,
) -> dict[str, Any]:
    import numpy as np
    from tqdm.auto import tqdm

    from learnrec.config import Settings
    from learnrec.serving.batch import FolderSink, Learners, run_batch
    from learnrec.serving.context import load_recommender
    from learnrec.serving.model_store import ActiveModel, LocalModelStore
    from learnrec.storage import make_engine
    from learnrec.storage.bulk import known_learners
    from learnrec_dev.benchmark.serving import (
        build_bundle,
        seed_database,
        synthetic_catalog,
        synthetic_histories,
        synthetic_learners,
    )

    if learners < 1 or items < 100:
        raise ValueError("--learners must be at least 1 and --items at least 100")
    out = out.resolve()
    work, output = out / "work", out / "output"
    for folder in (work, output):
        shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    catalog = synthetic_catalog(items, rng)
    people = synthetic_learners(learners, rng)
    histories = synthetic_histories(people, catalog, rng)
    built = build_bundle(work, catalog, people, histories, seed, rng, progress)
    database_url = f"sqlite:///{work / 'learnrec.db'}"
    seed_database(database_url, people, histories)
    timings["setup_s"] = time.perf_counter() - t
    del people, histories

    settings = Settings(vector_index="faiss")
    active = ActiveModel(
        LocalModelStore(built["models"]), lambda path: load_recommender(path, settings), math.inf
    )
    t = time.perf_counter()
    recommender = active.get()
    timings["load_s"] = time.perf_counter() - t
    if recommender is None:
        raise RuntimeError(f"the benchmark's bundle did not load: {active.error}")
    engine = make_engine(database_url)
    bar = tqdm(total=learners, desc="batch", unit="learner", disable=not progress)
    load_before = os.getloadavg()[0]
    try:
        summary = run_batch(
            engine,
            lambda key: (recommender, None, []),
            Learners(keys=known_learners(engine)),
            FolderSink(output),
            k=k,
            fmt="parquet" if fmt == "parquet" else "jsonl",
            progress=bar.update,
        )
    finally:
        bar.close()
        engine.dispose()
    load_after = os.getloadavg()[0]
    rate = summary.learners / summary.seconds if summary.seconds else 0.0
    projected_100k = 100_000 / rate if rate else math.inf
    result: dict[str, Any] = {
        "learners": summary.learners,
        "written": summary.written,
        "degraded": summary.degraded,
        "items": items,
        "k": k,
        "format": fmt,
        "seconds": summary.seconds,
        "learners_per_s": round(rate, 1),
        "projected_100k_s": round(projected_100k, 1),
        "parts": len(summary.parts),
        "output_mb": round(sum(p.stat().st_size for p in output.iterdir()) / 2**20, 1),
        "model_version": built["version"],
        "target": {"seconds_per_100k": TARGET_S_PER_100K, "met": projected_100k <= 600.0},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": {"before": load_before, "after": load_after},
        },
        "timings_s": {key: round(value, 2) for key, value in timings.items()},
        "seed": seed,
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def add_batch_command(bench_subparsers: argparse._SubParsersAction[Any]) -> None:
    batch = bench_subparsers.add_parser(
        "batch", help="learners per second of batch recommendations over synthetic data"
    )
    batch.add_argument("--learners", type=at_least(1), default=100_000)
    batch.add_argument("--items", type=at_least(100), default=10_000)
    batch.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    batch.add_argument("--seed", type=int, default=42)
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--quiet", action="store_true", help="no progress bars")
    batch.set_defaults(func=_batch_command)


def _batch_command(args: argparse.Namespace) -> int:
    result = run_batch_benchmark(
        args.learners,
        args.out,
        items=args.items,
        fmt=args.format,
        seed=args.seed,
        progress=not args.quiet,
    )
    verdict = "met" if result["target"]["met"] else "MISSED"
    print(
        f"batch benchmark: {result['learners']} learners, {result['items']} items, "
        f"k={result['k']}, {result['format']}\n"
        f"  {result['seconds']:.1f} s, {result['learners_per_s']:.0f} learners/s "
        f"(100k in {result['projected_100k_s']:.0f} s; target 600 s: {verdict})\n"
        f"figures: {args.out / RESULT_FILE}"
    )
    return 0
