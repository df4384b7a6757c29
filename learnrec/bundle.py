"""Model bundles: one folder (one S3 prefix) per model version, described by a manifest.

The manifest records what a version is (parameters, metrics, the data it saw, the code
that made it) and a SHA-256 of every file, so serving can refuse a bundle that was
half-uploaded or altered, and anyone can reproduce or audit a version later.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

MANIFEST_SCHEMA = 1

# The layout of a bundle: the one place its file names are spelled. Deployed bundles
# carry these names, so they never change; a renamed file would leave every existing
# version unloadable.
#
#   manifest.json        what the version is, and a SHA-256 of every other file
#   user_tower.onnx      retrieval job (learnrec.training.retrieval); together the run's
#   item_tower.onnx        ``retrieval`` artifact, which ranking mode copies from the
#   feature_space.json     active bundle instead of retraining
#   item_embeddings.npy
#   item_stats.npz         (rewritten by the ranking job with the stats it saw)
#   catalog.jsonl
#   catalog.index.npz
#   retrieval.json
#   faiss/index.faiss    the HNSW index: retrieval job, replaced by the ``build_index`` step
#   faiss/meta.npz
#   ranker.ubj           ranking job (learnrec.training.ranking)
#   ranker.json
#   ranking.json
#   evaluation.json      the ``register`` step: the evaluate step's verdict and its report
#   report/                (learnrec.evaluation.report names the files in there)
MANIFEST_FILE = "manifest.json"
USER_TOWER_FILE = "user_tower.onnx"  # ONNX, learnrec.retrieval.onnx_runtime runs it
ITEM_TOWER_FILE = "item_tower.onnx"
SPACE_FILE = "feature_space.json"  # vocabularies: how serving encodes like training
EMBEDDINGS_FILE = "item_embeddings.npy"  # [N+1, D] item vectors, row 0 = unknown item
STATS_FILE = "item_stats.npz"  # popularity, item-item similarity, item features
CATALOG_FILE = "catalog.jsonl"  # titles, topics, levels, prerequisites for serving
CATALOG_INDEX_FILE = "catalog.index.npz"  # content ids and line offsets of CATALOG_FILE
RETRIEVAL_SUMMARY_FILE = "retrieval.json"  # the retrieval job's parameters, parity, timings
INDEX_DIR = "faiss"  # the HNSW index over the item vectors
INDEX_GRAPH_FILE = "index.faiss"  # inside INDEX_DIR: the graph, in faiss's own format
INDEX_META_FILE = "meta.npz"  # inside INDEX_DIR: ids and filter fields, plain arrays
RANKER_FILE = "ranker.ubj"  # XGBoost's native model (UBJSON)
RANKER_META_FILE = "ranker.json"  # the ranker's training summary, beside the model
RANKING_SUMMARY_FILE = "ranking.json"  # the ranking job's parameters and figures
EVALUATION_FILE = "evaluation.json"  # the evaluate step's metrics, gate and drift
REPORT_DIR = "report"  # the evaluation report and its plots

#: What a bundle holds besides the retrieval job's files: made by the ranking job and
#: the registry, so ranking mode leaves them behind when it keeps the active towers.
NOT_RETRIEVAL_FILES = frozenset(
    {MANIFEST_FILE, RANKER_FILE, RANKER_META_FILE, RANKING_SUMMARY_FILE, EVALUATION_FILE}
)


class _Entry:
    """A file (or folder) of the layout: its path under a bundle, read as an attribute."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, layout: None, owner: type[BundleLayout]) -> _Entry: ...
    @overload
    def __get__(self, layout: BundleLayout, owner: type[BundleLayout]) -> Path: ...
    def __get__(self, layout: BundleLayout | None, owner: type[BundleLayout]) -> Path | _Entry:
        return self if layout is None else layout.root / self.name


@dataclass(frozen=True)
class BundleLayout:
    """The paths of one bundle's files, for whoever reads or writes them.

    ``BundleLayout(folder).space`` rather than ``folder / "feature_space.json"``: the
    names stay in this module, and a path under a bundle cannot be misspelled.
    """

    root: Path

    manifest = _Entry(MANIFEST_FILE)
    user_tower = _Entry(USER_TOWER_FILE)
    item_tower = _Entry(ITEM_TOWER_FILE)
    space = _Entry(SPACE_FILE)
    embeddings = _Entry(EMBEDDINGS_FILE)
    stats = _Entry(STATS_FILE)
    catalog = _Entry(CATALOG_FILE)
    catalog_index = _Entry(CATALOG_INDEX_FILE)
    retrieval_summary = _Entry(RETRIEVAL_SUMMARY_FILE)
    index_dir = _Entry(INDEX_DIR)
    ranker = _Entry(RANKER_FILE)
    ranker_meta = _Entry(RANKER_META_FILE)
    ranking_summary = _Entry(RANKING_SUMMARY_FILE)
    evaluation = _Entry(EVALUATION_FILE)
    report_dir = _Entry(REPORT_DIR)


class BundleError(RuntimeError):
    """A bundle is incomplete, altered, or not a bundle at all."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit of the code that trained a model, when run from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version(explicit: str | None = None) -> str:
    """The commit to record: given, from git, from ``LEARNREC_GIT_COMMIT``, or "unknown".

    Jobs in AWS run from an uploaded copy of the source with no ``.git``; the deployment
    records the commit it shipped in ``LEARNREC_GIT_COMMIT`` for them.
    """
    if explicit:
        return explicit
    from learnrec.config import get_settings

    return git_commit() or get_settings().git_commit or "unknown"


def new_version(now: datetime | None = None) -> str:
    """Versions sort by time: ``20261126T031500Z``."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_manifest(
    directory: Path,
    version: str,
    parameters: Mapping[str, Any],
    metrics: Mapping[str, Any],
    data: Mapping[str, Any],
    created: datetime | None = None,
    drift: Mapping[str, Any] | None = None,
    commit: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Checksum every file under ``directory`` and write the manifest beside them.

    ``drift`` is the version's drift report and profile (learnrec.pipeline.drift);
    ``extra`` adds fields such as the pipeline run that made the version.
    """
    files = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "version": version,
        "created": (created or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "git_commit": code_version(commit),
        "data": dict(data),
        "parameters": dict(parameters),
        "metrics": dict(metrics),
        "drift": dict(drift or {}),
        **dict(extra or {}),
        "files": files,
    }
    BundleLayout(directory).manifest.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def read_manifest(directory: Path, verify: bool = True) -> dict[str, Any]:
    """Load a bundle's manifest, checking each file's checksum unless told not to."""
    path = BundleLayout(directory).manifest
    if not path.exists():
        raise BundleError(f"{directory} has no {MANIFEST_FILE}: not a model bundle")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if verify:
        for name, expected in manifest["files"].items():
            file = directory / name
            if not file.exists():
                raise BundleError(f"bundle {manifest['version']}: {name} is missing")
            if sha256_file(file) != expected:
                raise BundleError(
                    f"bundle {manifest['version']}: {name} does not match its checksum"
                )
    return manifest
