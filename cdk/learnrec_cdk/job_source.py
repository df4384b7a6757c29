"""The source archive of the pipeline's SageMaker jobs: ``sourcedir.tar.gz``.

SageMaker's framework containers download ``sagemaker_submit_directory`` and unpack it
as a gzipped tar (not a zip, which is what a CDK folder asset would upload), so the app
writes the archive itself and deploys it as a file asset. The archive is reproducible
(sorted entries, fixed times and owners, gzip without a timestamp): the same sources give
the same bytes, hence the same asset hash, and an unchanged pipeline is not re-uploaded.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

# Inside the archive: the learnrec package, the jobs' entry points, and the bootstrap.
PACKAGES = ("learnrec", "training")
SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})


def _files(repo: Path, bootstrap_dir: Path) -> Iterator[tuple[str, Path]]:
    for folder in PACKAGES:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file() and not SKIP_DIRS.intersection(path.parts) and path.suffix != ".pyc":
                yield path.relative_to(repo).as_posix(), path
    for path in sorted(bootstrap_dir.iterdir()):
        if path.is_file():
            yield path.name, path


def build_source_archive(repo: Path, bootstrap_dir: Path, out: Path) -> Path:
    """Write ``out`` (a ``.tar.gz``) unless it already holds exactly these bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in _files(repo, bootstrap_dir):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    content = gzip.compress(buffer.getvalue(), mtime=0)
    if not out.is_file() or out.read_bytes() != content:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
    return out
