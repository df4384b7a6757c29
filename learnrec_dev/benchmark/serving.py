"""``learnrec benchmark serving``: latency and cold start of the real API handler at scale.

The quality benchmark says whether the models are good; this one says whether serving
them fits Lambda: P95 of ``GET /recommend/{user_id}`` and the cold start (imports plus
the first bundle load) over a catalog of production size. Quality does not matter here
and a trained model on 100 000 items would take hours, so the *data* is synthetic (a
generated catalog, learners, Zipf-distributed histories, towers with random weights, a
ranker fitted on random labels); everything else is the real path: the bundle is written
by the same functions training uses (ONNX export with its parity check, item statistics,
an XGBoost ranker of production size, the faiss HNSW index, a checksummed manifest),
published and promoted in a model store, and requests go through
``functions/api/handler.py`` exactly as API Gateway would send them.

The handler runs in a fresh Python process, so its imports are really cold. That process
imports *this* module to find :func:`_worker`, which is why the module imports only the
standard library at the top: anything heavier here would be warm before the clock starts
(the worker refuses to measure if it finds that happened).

Milliseconds and seconds only mean something on the machine that measured them, so the
same run also measures two references on the same inputs and reports the handler as
multiples of them, figures that travel between machines: the *compute floor* (per
request, the user tower, the top-100 retrieval and the ranker's scoring of those
candidates, called directly with the learner's data already read: no HTTP layer, no
database, no business rules) beside the handler's p50/p95, and a bare
``import numpy, onnxruntime`` in a fresh process of the same interpreter (median of
several) beside the cold start.

Writes ``DIR/serving.json`` (the figures) and leaves the bundle, model store and SQLite
database under ``DIR/work/``. The package size is that of the deployable api function
plus its layers, built by :mod:`learnrec_dev.packaging` (as ``learnrec benchmark package``
does); without a build (``--no-package-build``, or pip cannot reach an index) it falls
back to an estimate from this venv, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnrec_dev.benchmark.arguments import at_least

if TYPE_CHECKING:
    import numpy as np

    from learnrec.features.ranking import ItemStats
    from learnrec.features.space import FeatureSpace
    from learnrec.schemas import ContentItem, EventType, Learner

RESULT_FILE = "serving.json"
TARGET_P95_MS = 15.0
TARGET_COLD_START_S = 1.5
# The handler's p95 as a multiple of the compute floor's p95: what HTTP, auth, the
# database read and business rules may add to the models' own work.
TARGET_P95_VS_FLOOR = 2.0
BARE_IMPORT_RUNS = 5
BARE_IMPORT = (
    "import time; started = time.perf_counter(); import numpy, onnxruntime; "
    "print(time.perf_counter() - started)"
)
LAMBDA_LIMIT_MB = 250
K = 10
HISTORY_PER_LEARNER = 20
N_TOPICS = 20
N_TAGS = 200
RANKER_LEARNERS = 300
RANKER_CANDIDATES = 100
EMBEDDING_DIM = 64
HIDDEN_DIM = 128
TOKEN_TTL_S = 6 * 3600
# Heavy modules the handler imports; finding one loaded before the timed import means
# the cold start would be measured warm.
_COLD_SENTINELS = ("numpy", "fastapi", "pydantic", "onnxruntime", "xgboost", "faiss", "scipy")
# Modules serving must not need: their presence after the run means a slow cold start
# and a package that does not fit.
_NEVER_AT_SERVING = ("scipy", "sklearn", "pandas", "xgboost", "tensorflow", "aws_xray_sdk")
_WORKER_BOOT = (
    "import sys; from learnrec_dev.benchmark.serving import _worker; sys.exit(_worker(sys.argv[1]))"
)
PACKAGE_BUILT_NOTE = (
    "The api function plus its layers ({layers}) as learnrec_dev.packaging builds them for "
    "the Lambda python{python} runtime (x86_64), unzipped: what the 250 MB limit counts."
)
PACKAGE_NOTE = (
    "Estimated from this venv (CPython {python}, {platform}): the installed files of the "
    "learnrec[serving] dependency closure plus learnrec/ and functions/api/, not yet the "
    "trimmed layer build (which would drop tests, headers, __pycache__ and bundled docs)."
)


# ----------------------------------------------------------------------------- entry


def run_serving(
    items: int,
    requests: int,
    out: Path,
    users: int = 2000,
    seed: int = 42,
    progress: bool = True,
    package_dir: Path | None = Path("build/lambda"),
) -> dict[str, Any]:
    """Build a synthetic bundle of ``items`` items, serve ``requests`` requests, report.

    ``DIR/work`` is recreated on every run, so figures never mix two bundles. Returns
    what it writes to ``DIR/serving.json``. ``package_dir``: where the api function and
    its layers are built to be measured (None: estimate from this venv instead).
    """
    if items < 100:
        raise ValueError("--items must be at least 100 (prerequisite chains, k=10 answers)")
    if requests < 1 or users < 1:
        raise ValueError("--requests and --users must be at least 1")
    import numpy as np
    from tqdm.auto import tqdm

    started = time.perf_counter()
    out = out.resolve()  # the worker runs in another folder: a relative path would move
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}

    steps = tqdm(total=4, desc="serving benchmark", unit="step", disable=not progress)
    steps.set_postfix_str("synthetic data")
    t = time.perf_counter()
    catalog = synthetic_catalog(items, rng)
    learners = synthetic_learners(users, rng)
    histories = synthetic_histories(learners, catalog, rng)
    timings["data_s"] = time.perf_counter() - t
    steps.update(1)

    steps.set_postfix_str("model bundle")
    t = time.perf_counter()
    built = build_bundle(work, catalog, learners, histories, seed, rng, progress)
    timings["bundle_s"] = time.perf_counter() - t
    steps.update(1)

    steps.set_postfix_str("database")
    t = time.perf_counter()
    database_url = f"sqlite:///{work / 'learnrec.db'}"
    seed_database(database_url, learners, histories)
    timings["database_s"] = time.perf_counter() - t
    steps.update(1)

    steps.set_postfix_str("requests")
    t = time.perf_counter()
    load_before = os.getloadavg()[0]
    measured = measure_handler(
        work, database_url, built["models"], learners, requests, rng, progress
    )
    timings["serve_s"] = time.perf_counter() - t
    load_after = os.getloadavg()[0]
    steps.update(1)
    steps.close()

    durations = np.asarray(measured["durations_ms"], dtype=np.float64)
    p50, p95, p99 = (float(v) for v in np.percentile(durations, [50, 95, 99]))
    cold_start_s = measured["import_s"] + measured["load_s"]
    floor = np.asarray(measured["floor_ms"], dtype=np.float64)
    f50, f95, f99 = (float(v) for v in np.percentile(floor, [50, 95, 99]))
    bare = bare_import_seconds(work)
    result: dict[str, Any] = {
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "p99_ms": round(p99, 3),
        "mean_ms": round(float(durations.mean()), 3),
        "max_ms": round(float(durations.max()), 3),
        "first_request_ms": round(float(durations[0]), 3),
        "requests": len(durations),
        "errors": measured["errors"],
        "fallbacks": measured["fallbacks"],
        "statuses": measured["statuses"],
        "degraded": measured["degraded"],
        "error_samples": measured["error_samples"],
        "cold_start_s": round(cold_start_s, 3),
        "import_s": round(measured["import_s"], 3),
        "load_s": round(measured["load_s"], 3),
        "interpreter_s": round(measured["interpreter_s"], 3),
        "compute_floor": {
            "p50_ms": round(f50, 3),
            "p95_ms": round(f95, 3),
            "p99_ms": round(f99, 3),
            "mean_ms": round(float(floor.mean()), 3),
            "requests": len(floor),
            "what": "user tower, top-100 retrieval through the request's filters, ranker "
            "features and scoring; the learner's data read beforehand; the same "
            "requests in the same process, in a pass after the handler's",
        },
        "bare_import": bare,
        "ratios": {
            "p50_vs_floor": round(p50 / f50, 2),
            "p95_vs_floor": round(p95 / f95, 2),
            "cold_start_vs_bare_import": round(cold_start_s / bare["import_s_median"], 2),
        },
        "heavy_modules_loaded": measured["heavy_modules"],
        "items": items,
        "users": users,
        "k": K,
        "filtered_requests": measured["filtered"],
        "model_version": built["version"],
        "bundle_mb": built["bundle_mb"],
        "bundle": built["summary"],
        "targets": {
            "p95_ms": TARGET_P95_MS,
            "cold_start_s": TARGET_COLD_START_S,
            "p95_vs_floor": TARGET_P95_VS_FLOOR,
            "p95_vs_floor_met": bool(p95 <= TARGET_P95_VS_FLOOR * f95),
            "met": bool(
                p95 <= TARGET_P95_MS
                and cold_start_s <= TARGET_COLD_START_S
                and measured["errors"] == 0
            ),
        },
        "package": deployable_package_size(package_dir),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # Latency on a shared machine is only as good as its idleness: a 1-minute
            # load average near or above the CPU count means other work competed.
            "load_average_1m": {"before": load_before, "after": load_after},
            "note": "bundle files were just written, so the OS file cache is warm; "
            "a Lambda cold start also reads them from the layer or /tmp",
        },
        "timings_s": {**{k: round(v, 2) for k, v in timings.items()}},
        "seed": seed,
    }
    result["timings_s"]["total_s"] = round(time.perf_counter() - started, 2)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for people; the JSON has everything."""
    package = result["package"]
    verdict = "met" if result["targets"]["met"] else "MISSED"
    floor, ratios = result["compute_floor"], result["ratios"]
    floor_verdict = "met" if result["targets"]["p95_vs_floor_met"] else "MISSED"
    return "\n".join(
        [
            f"serving benchmark: {result['items']} items, {result['requests']} requests "
            f"(k={result['k']}, {result['filtered_requests']} with filters)",
            f"  latency ms   p50 {result['p50_ms']:.2f}  p95 {result['p95_ms']:.2f}  "
            f"p99 {result['p99_ms']:.2f}  mean {result['mean_ms']:.2f}  "
            f"first {result['first_request_ms']:.1f}",
            f"  errors {result['errors']}  fallbacks {result['fallbacks']}",
            f"  cold start   {result['cold_start_s']:.2f} s "
            f"(import {result['import_s']:.2f} s + first load {result['load_s']:.2f} s)",
            f"  floor ms     p50 {floor['p50_ms']:.2f}  p95 {floor['p95_ms']:.2f}  "
            f"(user tower, top-100 retrieval, ranker; no HTTP, no database)",
            f"  ratios       handler p50 {ratios['p50_vs_floor']:.2f}x  "
            f"p95 {ratios['p95_vs_floor']:.2f}x the floor "
            f"(target <= {result['targets']['p95_vs_floor']:g}x: {floor_verdict}); "
            f"cold start {ratios['cold_start_vs_bare_import']:.2f}x a bare "
            f"`import numpy, onnxruntime` ({result['bare_import']['import_s_median']:.2f} s)",
            f"  package      {package['package_unzipped_mb']:.0f} MB unzipped "
            f"(Lambda limit {package['lambda_limit_mb']} MB; {package['source']})",
            f"  targets (p95 <= {TARGET_P95_MS:g} ms, cold start <= "
            f"{TARGET_COLD_START_S:g} s, no errors): {verdict}",
        ]
    )


def add_serving_command(bench_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``benchmark serving`` to the ``benchmark`` subcommands of the CLI."""
    serving = bench_subparsers.add_parser(
        "serving", help="latency and cold start of the API handler over a synthetic catalog"
    )
    serving.add_argument("--items", type=at_least(100), default=100_000)
    serving.add_argument("--requests", type=at_least(1), default=2000)
    serving.add_argument("--users", type=at_least(1), default=2000)
    serving.add_argument("--seed", type=int, default=42)
    serving.add_argument("--out", type=Path, required=True)
    serving.add_argument("--quiet", action="store_true", help="no progress bars")
    serving.add_argument(
        "--package-dir",
        type=Path,
        default=Path("build/lambda"),
        help="where to build the api function and layers to measure (default build/lambda)",
    )
    serving.add_argument(
        "--no-package-build",
        action="store_true",
        help="estimate the package size from this venv instead of building it",
    )
    serving.set_defaults(func=_serving_command)


def _serving_command(args: argparse.Namespace) -> int:
    result = run_serving(
        args.items,
        args.requests,
        args.out,
        args.users,
        args.seed,
        progress=not args.quiet,
        package_dir=None if args.no_package_build else args.package_dir,
    )
    print(format_summary(result))
    print(f"figures: {args.out / RESULT_FILE}")
    return 0


# ----------------------------------------------------------------------------- data


def synthetic_catalog(n: int, rng: np.random.Generator) -> list[ContentItem]:
    """``n`` items over 20 topics, levels 1-5, tags, formats, and prerequisite chains.

    About a third of the items sit in chains of 2-5 items of one topic and rising level
    (each requires the one before), so the prerequisite filter and features have work.
    """
    import numpy as np

    from learnrec.data.generator import TOPIC_NAMES
    from learnrec.schemas import ContentFormat, ContentItem

    topics = TOPIC_NAMES[:N_TOPICS]
    formats = list(ContentFormat)
    main = rng.integers(0, N_TOPICS, n)
    second = np.where(rng.random(n) < 0.2, rng.integers(0, N_TOPICS, n), -1)
    levels = rng.integers(1, 6, n)
    tags = rng.integers(0, N_TAGS, (n, 3))
    fmt = rng.integers(0, len(formats), n)
    duration = np.round(rng.lognormal(3.0, 0.8, n), 1)
    requires: list[int | None] = [None] * n
    i = 0
    while i < n:
        length = int(rng.integers(2, 6))
        if rng.random() < 0.35 and i + length <= n:
            start_level = int(rng.integers(1, 6 - min(length - 1, 4)))
            for j in range(length):
                main[i + j] = main[i]
                levels[i + j] = min(5, start_level + j)
                if j:
                    requires[i + j] = i + j - 1
            i += length
        else:
            i += 1
    ids = [f"item-{i:07d}" for i in range(n)]
    out = []
    for i in range(n):
        item_topics = [topics[main[i]]]
        if second[i] >= 0 and second[i] != main[i]:
            item_topics.append(topics[second[i]])
        prerequisite = requires[i]
        out.append(
            ContentItem(
                content_id=ids[i],
                title=f"{topics[main[i]].replace('-', ' ').title()} {formats[fmt[i]].value} {i}",
                topics=item_topics,
                tags=[f"tag-{t:03d}" for t in sorted(set(tags[i].tolist()))],
                level=int(levels[i]),
                format=formats[fmt[i]],
                duration_minutes=float(duration[i]),
                prerequisites=[] if prerequisite is None else [ids[prerequisite]],
            )
        )
    return out


def synthetic_learners(n: int, rng: np.random.Generator) -> list[Learner]:
    """Profiles with a level, 1-3 interests and 0-2 goals: what the user tower reads."""
    from learnrec.data.generator import GOALS, TOPIC_NAMES
    from learnrec.schemas import Learner

    topics = TOPIC_NAMES[:N_TOPICS]
    return [
        Learner(
            user_id=f"learner-{i:06d}",
            level=int(rng.integers(1, 6)),
            interests=[str(t) for t in rng.choice(topics, int(rng.integers(1, 4)), False)],
            goals=[str(g) for g in rng.choice(GOALS, int(rng.integers(0, 3)), False)],
        )
        for i in range(n)
    ]


HistoryEvent = tuple[str, "EventType", datetime, float]
"""(content_id, event_type, ts, weight) of one engagement, oldest first per learner."""


def synthetic_histories(
    learners: Sequence[Learner], catalog: Sequence[ContentItem], rng: np.random.Generator
) -> dict[str, list[HistoryEvent]]:
    """~20 distinct items per learner, Zipf-distributed over the catalog, dated.

    Zipf (exponent ~1) over a random item order gives the head-and-long-tail that
    popularity, co-engagement similarity and the popular fallback see in production.
    """
    import numpy as np

    from learnrec.schemas import EVENT_STRENGTH, EventType

    n = len(catalog)
    ranks = rng.permutation(n)
    weights = 1.0 / (np.arange(1, n + 1) ** 1.05)
    cumulative = np.cumsum(weights[np.argsort(ranks)])
    cumulative /= cumulative[-1]
    draws = np.searchsorted(cumulative, rng.random((len(learners), 3 * HISTORY_PER_LEARNER)))
    kinds = [EventType.VIEW, EventType.START, EventType.COMPLETE]
    now = datetime.now(UTC)
    out: dict[str, list[HistoryEvent]] = {}
    for learner, row in zip(learners, draws, strict=True):
        picked = list(dict.fromkeys(int(i) for i in row))[:HISTORY_PER_LEARNER]
        ages = np.sort(rng.uniform(0, 90 * 86400, len(picked)))[::-1]
        kind_of = rng.choice(len(kinds), len(picked), p=[0.5, 0.3, 0.2])
        out[learner.user_id] = [
            (
                catalog[item].content_id,
                kinds[kind],
                now - timedelta(seconds=float(age)),
                EVENT_STRENGTH[kinds[kind]],
            )
            for item, age, kind in zip(picked, ages, kind_of, strict=True)
        ]
    return out


# ----------------------------------------------------------------------------- bundle


def build_bundle(
    work: Path,
    catalog: Sequence[ContentItem],
    learners: Sequence[Learner],
    histories: dict[str, list[HistoryEvent]],
    seed: int,
    rng: np.random.Generator,
    progress: bool,
) -> dict[str, Any]:
    """Write a complete bundle with the training code's writers; publish and promote it.

    Random tower weights and random ranker labels are the only shortcuts: file formats,
    sizes and per-request work are those of a trained bundle of the same catalog.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from learnrec.bundle import (
        CATALOG_FILE,
        EMBEDDINGS_FILE,
        SPACE_FILE,
        STATS_FILE,
        new_version,
        write_manifest,
    )
    from learnrec.data.dataset import items_frame
    from learnrec.features.ranking import build_item_stats
    from learnrec.features.space import FeatureSpace, learner_tokens
    from learnrec.retrieval.onnx_runtime import OnnxTowers
    from learnrec.serving.bundle_index import write_index
    from learnrec.serving.catalog import write_catalog
    from learnrec.serving.model_store import LocalModelStore, promote
    from learnrec.training.inputs import catalog_tokens

    bundle = work / "bundle"
    bundle.mkdir(parents=True)
    bar = tqdm(total=7, desc="bundle", unit="step", disable=not progress, leave=False)

    bar.set_postfix_str("catalog and feature space")
    items = items_frame(catalog)
    write_catalog(catalog, bundle / CATALOG_FILE)
    tokens = catalog_tokens(items)
    profiles = {
        learner.user_id: learner_tokens(learner.interests, learner.goals, learner.level)
        for learner in learners
    }
    space = FeatureSpace.build(
        user_ids=profiles,
        item_ids=items["content_id"],
        user_token_lists=profiles.values(),
        item_token_lists=tokens,
    )
    space.save(bundle / SPACE_FILE)
    item_idx = np.arange(1, space.items.size, dtype=np.int64)
    item_features = space.encode_item_features(tokens)
    bar.update(1)

    bar.set_postfix_str("towers -> ONNX (parity checked)")
    parity, config = _export_random_towers(
        bundle, space, learners, histories, profiles, item_idx, item_features, seed
    )
    bar.update(1)

    bar.set_postfix_str("item embeddings")
    towers = OnnxTowers(bundle, threads=0)
    vectors = towers.items_batched(item_idx, item_features)
    embeddings = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])
    np.save(bundle / EMBEDDINGS_FILE, embeddings)
    bar.update(1)

    bar.set_postfix_str("item statistics")
    stats = build_item_stats(
        space,
        item_tokens=tokens,
        item_levels=items["level"].astype(float).tolist(),
        item_prerequisites=items["prerequisites"].tolist(),
        interactions=((u, h[0]) for u, events in histories.items() for h in events),
    )
    stats.save(bundle / STATS_FILE)
    bar.update(1)

    bar.set_postfix_str("XGBoost ranker")
    ranker_summary = _fit_random_ranker(
        bundle, space, stats, towers, embeddings, learners, histories, profiles, seed, rng
    )
    bar.update(1)

    bar.set_postfix_str("faiss HNSW index")
    t = time.perf_counter()
    write_index(bundle)
    index_s = time.perf_counter() - t
    bar.update(1)

    bar.set_postfix_str("manifest, publish, promote")
    version = new_version()
    summary = {
        "synthetic": True,
        "tower_config": config,
        "parity": parity,
        "ranker": ranker_summary,
        "index_build_s": round(index_s, 2),
        "interactions": sum(len(v) for v in histories.values()),
        "prerequisite_edges": int(stats.prerequisites.nnz),
        "similarity_nnz": int(stats.similarity.nnz),
        "regression_nnz": int(stats.regression.nnz),
    }
    write_manifest(
        bundle,
        version,
        parameters={"synthetic": True, "tower_config": config, "ranker": ranker_summary},
        metrics={"parity": parity},
        data={"synthetic": True, "items": len(catalog), "learners": len(learners)},
    )
    models = LocalModelStore(work / "models")
    models.publish(bundle, version)
    promote(models, version)
    bar.update(1)
    bar.close()
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    shutil.rmtree(bundle)  # the store holds the published copy; don't keep two
    return {
        "version": version,
        "models": models.root,
        "bundle_mb": round(size / 2**20, 1),
        "summary": summary,
    }


def _export_random_towers(
    bundle: Path,
    space: FeatureSpace,
    learners: Sequence[Learner],
    histories: dict[str, list[HistoryEvent]],
    profiles: dict[str, list[str]],
    item_idx: np.ndarray,
    item_features: np.ndarray,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Untrained towers of production size, exported to ONNX through the parity check."""
    from dataclasses import asdict

    from learnrec.features.space import encode_user_inputs
    from learnrec.retrieval.export import check_input_names, export_tower
    from learnrec.retrieval.onnx_runtime import ITEM_TOWER_FILE, USER_TOWER_FILE
    from learnrec.retrieval.tf_runtime import tf
    from learnrec.retrieval.towers import ItemTower, TowerConfig, UserTower

    tf.keras.utils.set_random_seed(seed)
    config = TowerConfig.for_space(space, embedding_dim=EMBEDDING_DIM, hidden_dim=HIDDEN_DIM)
    user_tower, item_tower = UserTower(config), ItemTower(config)
    sample_users = [learner.user_id for learner in learners[:512]]
    user_sample = encode_user_inputs(
        space,
        sample_users,
        [[h[0] for h in histories[u]] for u in sample_users],
        [profiles[u] for u in sample_users],
    )
    item_sample = {"item_idx": item_idx[:2048], "item_features": item_features[:2048]}
    check_input_names(user_sample, item_sample)
    # Keras creates weights on the first call; the export traces a built model.
    for tower, sample in ((user_tower, user_sample), (item_tower, item_sample)):
        tower({k: tf.constant(v) for k, v in sample.items()}, training=False)
    parity = [
        export_tower(user_tower, user_sample, bundle / USER_TOWER_FILE),
        export_tower(item_tower, item_sample, bundle / ITEM_TOWER_FILE),
    ]
    return [asdict(p) for p in parity], config.to_json()


def _fit_random_ranker(
    bundle: Path,
    space: FeatureSpace,
    stats: ItemStats,
    towers: Any,
    embeddings: np.ndarray,
    learners: Sequence[Learner],
    histories: dict[str, list[HistoryEvent]],
    profiles: dict[str, list[str]],
    seed: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """A production-sized ranker (200 trees, depth 4) on real features, random labels.

    Prediction cost depends on tree count and depth, not on what the trees learned, so
    random labels give realistic latency; the features are the ones serving computes,
    over each learner's real top-100 retrieval candidates.
    """
    import numpy as np

    from learnrec.features.ranking import FEATURE_NAMES, LearnerState, ranking_features
    from learnrec.features.space import encode_user_inputs
    from learnrec.ranking.model import RankerParams, fit_ranker
    from learnrec.retrieval.candidates import top_k

    chosen = [learners[int(i)] for i in rng.permutation(len(learners))[:RANKER_LEARNERS]]
    ids = [learner.user_id for learner in chosen]
    history_ids = [[h[0] for h in histories[u]] for u in ids]
    inputs = encode_user_inputs(space, ids, history_ids, [profiles[u] for u in ids])
    vectors = towers.users_batched(inputs["user_idx"], inputs["history"], inputs["user_features"])
    seen = [space.items.lookup(h) for h in history_ids]
    candidates, scores = top_k(vectors, embeddings, seen, RANKER_CANDIDATES)
    blocks, labels, groups = [], [], []
    for row, learner in enumerate(chosen):
        valid = candidates[row] != 0
        state = LearnerState.of(
            space,
            history_ids[row],
            [h[3] for h in histories[learner.user_id]],
            learner.level,
            learner.interests,
        )
        block = ranking_features(stats, state, candidates[row][valid], scores[row][valid])
        label = (rng.random(len(block)) < 0.1).astype(np.float32)
        label[0], label[-1] = 1.0, 0.0  # a group without contrast teaches nothing
        blocks.append(block)
        labels.append(label)
        groups.append(len(block))
    # All 200 rounds: on random labels early stopping would keep a handful of trees, and
    # the latency measured would be that of a ranker far smaller than a trained one.
    params = RankerParams(n_estimators=200, max_depth=4, seed=seed, validation_fraction=0.0)
    ranker = fit_ranker(np.vstack(blocks), np.concatenate(labels), np.asarray(groups), params)
    dump = ranker.booster.get_dump()
    summary = {
        "synthetic_labels": True,
        "features": len(FEATURE_NAMES),
        "rows": int(sum(groups)),
        "trees": len(dump),
        "leaves": sum(tree.count("leaf=") for tree in dump),
        "n_estimators": params.n_estimators,
        "max_depth": params.max_depth,
    }
    ranker.save(bundle, summary)
    return summary


# ----------------------------------------------------------------------------- database


def seed_database(
    database_url: str, learners: Sequence[Learner], histories: dict[str, list[HistoryEvent]]
) -> None:
    """Profiles and recent history, which the recommend route reads on every request."""
    from learnrec.storage import CatalogStore, make_engine
    from learnrec.storage.migrate import upgrade

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        store = CatalogStore(engine)
        store.upsert_learners(learners)
        store.record_history(
            (user, cid, kind, ts, weight)
            for user, events in histories.items()
            for cid, kind, ts, weight in events
        )
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- measuring


def request_plan(
    learners: Sequence[Learner], count: int, rng: np.random.Generator, private_pem: str
) -> list[dict[str, Any]]:
    """``count`` recommend calls for random learners, a third with topic or level filters.

    Each carries the learner's own bearer token (RS256), as the SPA sends it.
    """
    from learnrec.data.generator import TOPIC_NAMES
    from learnrec.serving.auth import issue_token

    tokens: dict[str, str] = {}
    plan = []
    for _ in range(count):
        learner = learners[int(rng.integers(len(learners)))]
        query: dict[str, str | list[str]] = {"k": str(K)}
        if rng.random() < 0.25:
            query["include_topics"] = [str(rng.choice(TOPIC_NAMES[:N_TOPICS]))]
        if rng.random() < 0.15:
            query["levels"] = [str(v) for v in rng.choice(range(1, 6), 2, replace=False)]
        if learner.user_id not in tokens:
            tokens[learner.user_id] = issue_token(
                private_pem, learner.user_id, ["learner"], ttl_seconds=TOKEN_TTL_S
            )
        plan.append(
            {
                "path": f"/recommend/{learner.user_id}",
                "query": query,
                "token": tokens[learner.user_id],
            }
        )
    return plan


def handler_path() -> Path:
    """``functions/api/handler.py`` of the checkout this package runs from."""
    path = Path(__file__).resolve().parents[2] / "functions" / "api" / "handler.py"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: run the serving benchmark from a learnrec checkout"
        )
    return path


def measure_handler(
    work: Path,
    database_url: str,
    models: Path,
    learners: Sequence[Learner],
    requests: int,
    rng: np.random.Generator,
    progress: bool,
) -> dict[str, Any]:
    """Cold start and per-request latency of the real handler, in a fresh process.

    The worker's environment is what the deployed function gets (no Kinesis: the
    recommend path never writes events). EMF metrics are switched off so their JSON does
    not fill stdout during the timed loop; the worker's stdout goes to a log file.
    """
    from learnrec.serving.auth import generate_key_pair

    private_pem, public_pem = generate_key_pair()
    spec = {
        "handler": str(handler_path()),
        "requests": request_plan(learners, requests, rng, private_pem),
        "results": str(work / "worker-results.json"),
        "progress": progress,
    }
    from learnrec.function_env import process_environment

    settings = {
        "database_url": database_url,
        "model_store": str(models),
        "jwt_public_key": public_pem,
        "user_id_hash_key": "benchmark-hash-key",
    }
    env = {
        **process_environment("api", settings, os.environ, namespace="learnrec-benchmark"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    spec_path = work / "worker-spec.json"
    log = work / "worker.log"
    with log.open("w") as stdout:
        spec_path.write_text(json.dumps({**spec, "started_epoch": time.time()}))
        completed = subprocess.run(
            [sys.executable, "-c", _WORKER_BOOT, str(spec_path)],
            env=env,
            cwd=work,
            stdout=stdout,
            stderr=None if progress else subprocess.PIPE,
            text=True,
            timeout=900 + requests,
            check=False,
        )
    if completed.returncode != 0:
        detail = (completed.stderr or "")[-4000:] or f"see the output above and {log}"
        raise RuntimeError(f"the serving worker failed ({completed.returncode}): {detail}")
    results: dict[str, Any] = json.loads(Path(str(spec["results"])).read_text())
    return results


def _worker(spec_path: str) -> int:
    """Runs in the fresh process: cold-import the handler, load, then time requests.

    Only the standard library is loaded when this starts; the handler import and the
    first (``/health``) call are timed separately, as a Lambda init and first invoke.
    """
    entered = time.time()
    spec = json.loads(Path(spec_path).read_text())
    warm = [name for name in _COLD_SENTINELS if name in sys.modules]
    if warm:
        raise RuntimeError(f"{warm} already imported: the cold start would be measured warm")
    import importlib.util
    import warnings

    # Powertools warns once per empty flush (/health adds no metric): noise, not news.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    started = time.perf_counter()
    module_spec = importlib.util.spec_from_file_location("api_handler", spec["handler"])
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot load {spec['handler']}")
    handler = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(handler)
    import_s = time.perf_counter() - started

    from learnrec.serving.apigw import LambdaContext, rest_event

    health_event = rest_event("GET", "/health")
    started = time.perf_counter()
    health = handler.handler(health_event, LambdaContext())
    load_s = time.perf_counter() - started
    health_body = json.loads(health["body"])
    if health["statusCode"] != 200 or health_body.get("status") != "ok":
        raise RuntimeError(f"the model did not load: {health_body}")

    from tqdm.auto import tqdm

    events = [
        rest_event("GET", r["path"], r["query"], {"Authorization": f"Bearer {r['token']}"})
        for r in spec["requests"]
    ]
    contexts = [LambdaContext() for _ in events]
    durations: list[float] = []
    responses: list[dict[str, Any]] = []
    for event, context in tqdm(
        list(zip(events, contexts, strict=True)),
        desc="requests",
        unit="req",
        disable=not spec["progress"],
        leave=False,
    ):
        t = time.perf_counter()
        response = handler.handler(event, context)
        durations.append((time.perf_counter() - t) * 1000)
        responses.append(response)
    # Then the models' own work for the same requests, in the same process. A pass of
    # its own, so the handler's figures are measured exactly as before the floor
    # existed (the floor's work between handler calls would disturb them); the
    # learners are read only now, so the handler never found them in a cache this warmed.
    floor = ComputeFloor(handler.app.state.context_loader.get())
    floor_inputs = [floor.inputs(r["path"], r["query"]) for r in spec["requests"]]
    floor_ms: list[float] = []
    for inputs in floor_inputs:
        t = time.perf_counter()
        floor.run(inputs)
        floor_ms.append((time.perf_counter() - t) * 1000)
    Path(spec["results"]).write_text(
        json.dumps(
            {
                "import_s": import_s,
                "load_s": load_s,
                "interpreter_s": entered - float(spec["started_epoch"]),
                "health": health_body,
                "durations_ms": durations,
                "floor_ms": floor_ms,
                "filtered": sum(len(r["query"]) > 1 for r in spec["requests"]),
                "heavy_modules": [m for m in _NEVER_AT_SERVING if m in sys.modules],
                **_tally(responses),
            }
        )
    )
    return 0


class ComputeFloor:
    """The models' work for one recommend request, without HTTP, database or rules.

    User tower, top-k retrieval through the request's filters (the recommender's own
    index and k), and the ranker's features and scores for the candidates: what no
    serving layer can avoid. :meth:`inputs` reads the learner from the database
    beforehand, so :meth:`run` times only computation.
    """

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.recommender = ctx.model.get()
        if self.recommender is None or self.recommender.bundle is None:
            raise RuntimeError("no model is loaded: nothing to measure a floor on")

    def inputs(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        from learnrec.retrieval.index import ItemFilter
        from learnrec.serving.recommender import HistoryItem

        key = self.ctx.user_key(path.rsplit("/", 1)[-1])
        learner = self.ctx.store.learner_context(key)
        history = [HistoryItem(h.content_id, h.weight) for h in reversed(learner.history)]

        def listed(name: str) -> list[str]:
            value = query.get(name) or []
            return [value] if isinstance(value, str) else list(value)

        item_filter = ItemFilter(
            exclude_ids=frozenset(h.content_id for h in history),
            include_topics=frozenset(listed("include_topics")),
            levels=frozenset(int(v) for v in listed("levels")),
        )
        return {"key": key, "history": history, "profile": learner.profile, "filter": item_filter}

    def run(self, inputs: dict[str, Any]) -> None:
        import numpy as np

        recommender = self.recommender
        bundle = recommender.bundle
        history, profile = inputs["history"], inputs["profile"]
        vector = bundle.user_vector(inputs["key"], history, profile)
        hits = recommender.index.search(vector, recommender.top_k_retrieval, inputs["filter"])
        if not hits or bundle.ranker is None:
            return
        retrieval = np.array([h.score for h in hits], dtype=np.float32)
        ids = [h.content_id for h in hits]
        bundle.ranker.score(bundle.ranking_features(history, profile, ids, retrieval))


def bare_import_seconds(work: Path, runs: int = BARE_IMPORT_RUNS) -> dict[str, Any]:
    """``import numpy, onnxruntime`` in fresh processes of this interpreter: the floor
    of any cold start of the serving path, to put the handler's beside (median)."""
    import statistics

    imports: list[float] = []
    walls: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", BARE_IMPORT],
            capture_output=True,
            text=True,
            cwd=work,
            timeout=300,
            check=True,
        )
        walls.append(time.perf_counter() - started)
        imports.append(float(completed.stdout.strip().splitlines()[-1]))
    return {
        "import_s_median": round(statistics.median(imports), 3),
        "process_s_median": round(statistics.median(walls), 3),
        "import_s": [round(v, 3) for v in imports],
        "runs": runs,
    }


def _tally(responses: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Errors (not 200) and fallbacks (200 served by a degraded path), with samples."""
    statuses: Counter[int] = Counter()
    degraded: Counter[str] = Counter()
    errors = fallbacks = 0
    samples: list[Any] = []
    for response in responses:
        status = int(response["statusCode"])
        statuses[status] += 1
        body = json.loads(response["body"]) if response.get("body") else None
        if status != 200:
            errors += 1
            if len(samples) < 3:
                samples.append({"status": status, "body": body})
            continue
        if body and body.get("fallback"):
            fallbacks += 1
            degraded.update(body.get("degraded") or [body["fallback"]])
    return {
        "errors": errors,
        "fallbacks": fallbacks,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "degraded": dict(degraded.most_common(5)),
        "error_samples": samples,
    }


# ----------------------------------------------------------------------------- package


def deployable_package_size(package_dir: Path | None) -> dict[str, Any]:
    """The api function plus its layers, built as deployed; the venv estimate without.

    A build that fails (no package index reachable, say) does not fail the benchmark:
    the estimate stands in and ``build_error`` says why.
    """
    if package_dir is None:
        return serving_package_size()
    from learnrec_dev import packaging

    try:
        report = packaging.build(package_dir, only=["api"])
    except packaging.PackageTooLarge as too_large:
        report = too_large.report
    except (packaging.PackageError, OSError, ValueError) as error:
        return {**serving_package_size(), "build_error": str(error)}
    api = report.function("api")
    layers = {layer.name: layer for layer in report.layers}
    return {
        "package_unzipped_mb": round(api.unzipped_bytes / 2**20, 1),
        "lambda_limit_mb": LAMBDA_LIMIT_MB,
        "fits": api.fits,
        "code_mb": round(api.code_bytes / 2**20, 1),
        "layers_mb": {name: round(layers[name].unzipped_bytes / 2**20, 1) for name in api.layers},
        "largest_mb": {
            f"{name}/{entry}": round(size / 2**20, 1)
            for name in api.layers
            for entry, size in list(layers[name].largest.items())[:4]
        },
        "runtime_provided": list(report.runtime_provided),
        "build_dir": str(package_dir),
        "source": "built api function + layers",
        "note": PACKAGE_BUILT_NOTE.format(
            layers=", ".join(api.layers), python=packaging.PYTHON_VERSION
        ),
    }


def serving_package_size(top: int = 12) -> dict[str, Any]:
    """Installed size of what a serving Lambda would ship, from this venv.

    Walks the requirements of ``learnrec[serving]`` recursively (extras and environment
    markers honoured) and sums each distribution's recorded files, plus ``learnrec/`` and
    ``functions/api/``. Requirements come from ``pyproject.toml`` when the checkout has
    one, because an editable install's metadata is frozen at install time and misses
    dependencies added since.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    repo = Path(__file__).resolve().parents[2]
    pyproject = repo / "pyproject.toml"
    if pyproject.exists():
        import tomllib

        project = tomllib.loads(pyproject.read_text())["project"]
        roots = [*project["dependencies"], *project["optional-dependencies"]["serving"]]
        source = "pyproject.toml"
    else:
        roots = [
            text
            for text in metadata.requires("learnrec") or []
            if _applies(Requirement(text), {"", "serving"})
        ]
        source = "installed metadata"

    sizes: dict[str, int] = {}
    missing: list[str] = []
    queue = [Requirement(r) for r in roots]
    seen: set[str] = set()
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if name not in sizes:
            sizes[name] = _distribution_bytes(dist)
        extras = {""} | set(requirement.extras)
        queue.extend(
            child for text in dist.requires or [] if _applies(child := Requirement(text), extras)
        )
    own = {
        "learnrec (source)": _tree_bytes(repo / "learnrec"),
        "functions/api": _tree_bytes(repo / "functions" / "api"),
    }
    total = sum(sizes.values()) + sum(own.values())
    largest = sorted({**sizes, **own}.items(), key=lambda kv: -kv[1])[:top]
    return {
        "package_unzipped_mb": round(total / 2**20, 1),
        "lambda_limit_mb": LAMBDA_LIMIT_MB,
        "distributions": len(sizes),
        "largest_mb": {name: round(size / 2**20, 1) for name, size in largest},
        "missing": sorted(missing),
        "requirements_from": source,
        "source": "estimated from this venv",
        "note": PACKAGE_NOTE.format(
            python=platform.python_version(), platform=f"{sys.platform} {platform.machine()}"
        ),
    }


def _applies(requirement: Any, extras: set[str]) -> bool:
    """Whether a requirement is installed here for any of ``extras`` ("" = no extra)."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in extras)


def _distribution_bytes(dist: Any) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total


def _tree_bytes(root: Path) -> int:
    return sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
