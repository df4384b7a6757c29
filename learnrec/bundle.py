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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 1

# The files of a bundle, besides the two ONNX towers (learnrec.retrieval.onnx_runtime)
# and the ranker (learnrec.ranking.model).
SPACE_FILE = "feature_space.json"  # vocabularies: how serving encodes like training
EMBEDDINGS_FILE = "item_embeddings.npy"  # [N+1, D] item vectors, row 0 = unknown item
STATS_FILE = "item_stats.npz"  # popularity, item-item similarity, item features
CATALOG_FILE = "catalog.jsonl"  # titles, topics, levels, prerequisites for serving
CATALOG_INDEX_FILE = "catalog.index.npz"  # content ids and line offsets of CATALOG_FILE
INDEX_DIR = "faiss"  # the HNSW index over the item vectors


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
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def read_manifest(directory: Path, verify: bool = True) -> dict[str, Any]:
    """Load a bundle's manifest, checking each file's checksum unless told not to."""
    path = directory / MANIFEST_FILE
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
