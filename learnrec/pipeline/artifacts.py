"""Moving a run's artifacts between S3 prefixes and local folders, as SageMaker does.

A training job's model folder arrives in S3 as one ``model.tar.gz``; processing outputs
and copied bundles arrive as plain files. :func:`unpack` makes both look the same to the
step that reads them, so no step cares which kind of step produced its input.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

MODEL_TARBALL = "model.tar.gz"


def download_prefix(s3: Any, bucket: str, prefix: str, target: Path) -> int:
    """Every object under ``prefix`` into ``target``, keeping relative paths; the count."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for key in list_keys(s3, bucket, prefix):
        relative = key[len(prefix) :].lstrip("/")
        if not relative or relative.endswith("/"):
            continue
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))
        count += 1
    return count


def upload_folder(s3: Any, bucket: str, folder: Path, prefix: str) -> int:
    """Every file under ``folder`` to ``prefix``; the count."""
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = prefix.rstrip("/") + "/" + path.relative_to(folder).as_posix()
            s3.upload_file(str(path), bucket, key)
            count += 1
    return count


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(str(entry["Key"]) for entry in page.get("Contents", []))
    return keys


def pack(folder: Path, tarball: Path) -> Path:
    """``folder``'s content as SageMaker packs ``SM_MODEL_DIR``: a flat gzipped tar."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(folder).as_posix())
    return tarball


def unpack(folder: Path) -> Path:
    """Extract every ``model.tar.gz`` below ``folder`` into ``folder`` itself, then drop it.

    SageMaker puts a training job's output at ``<job>/output/model.tar.gz`` under the
    output path, so a downstream channel or processing input holds the tarball a few
    folders down; the files inside belong at the top.
    """
    for tarball in sorted(folder.rglob(MODEL_TARBALL)):
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(folder, filter="data")  # refuses absolute paths and ../
        tarball.unlink()
        for parent in tarball.parents:
            if parent == folder or any(parent.iterdir()):
                break
            parent.rmdir()
    return folder


def tarball_key(s3: Any, bucket: str, prefix: str) -> str | None:
    """The key of the (first) ``model.tar.gz`` under ``prefix``, if a training job wrote one."""
    for key in list_keys(s3, bucket, prefix):
        if key.endswith("/" + MODEL_TARBALL):
            return key
    return None
