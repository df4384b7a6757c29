"""The source archive of the pipeline's SageMaker jobs: ``sourcedir.tar.gz``.

SageMaker's framework containers download ``sagemaker_submit_directory`` and unpack it
as a gzipped tar (not a zip, which is what a CDK folder asset would upload), so the app
writes the archive itself and deploys it as a file asset. The archive is reproducible
(sorted entries, fixed times and owners, gzip without a timestamp): the same sources give
the same bytes, hence the same asset hash, and an unchanged pipeline is not re-uploaded.

The archive also carries the wheels the jobs install (``wheels/``), so a job downloads
nothing at run time: a job in a VPC without internet access starts all the same, and it
runs exactly the versions the tests run. They are resolved here, once, for the training
container's platform (CPython 3.12, manylinux x86_64) against what the container
preinstalls (``requirements/training-container.txt``: TensorFlow and what it depends on)
and the tested set (``requirements/constraints.txt``); a conflict between the two stops
the build (:class:`ResolutionConflictError`). The folder is reused while its inputs are
unchanged, like the Lambda layers of :mod:`learnrec_dev.packaging`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Inside the archive: the learnrec package, the jobs' entry points, and the bootstrap.
PACKAGES = ("learnrec", "training")
SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache"})

# The training container's interpreter and platform: CPython 3.12 on x86_64 with glibc
# 2.34 (Amazon Linux 2023). pip does not widen a manylinux_2_X tag to older glibc
# versions, so every tag the container accepts is listed.
PYTHON_VERSION = "3.12"
PLATFORMS: tuple[str, ...] = (
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 35)),
)
WHEELS = "wheels"
# In the wheel folder (and the archive): the pinned set the bootstrap installs, and the
# packages it installs without dependencies (TFRS and tf-keras name ``tensorflow`` as a
# dependency, which would pull a second TensorFlow next to the container's tensorflow-cpu).
LOCK = "requirements.lock"
LOCK_NODEPS = "requirements-nodeps.lock"
STAMP_FILE = ".learnrec-wheels.json"


class ResolutionConflictError(RuntimeError):
    """The jobs' requirements cannot be installed next to the container's packages."""


@dataclass(frozen=True)
class JobRequirements:
    """The files that decide what a job installs (see ``cdk/sagemaker/``, ``requirements/``)."""

    requirements: Path  # what the jobs need, by name (installed with dependencies)
    nodeps: Path  # what they need without its dependencies
    constraints: Path  # the tested versions
    container: Path  # what the container preinstalls and the jobs keep

    @classmethod
    def of_repo(cls, repo: Path) -> JobRequirements:
        return cls(
            requirements=repo / "cdk" / "sagemaker" / "requirements.txt",
            nodeps=repo / "cdk" / "sagemaker" / "requirements-nodeps.txt",
            constraints=repo / "requirements" / "constraints.txt",
            container=repo / "requirements" / "training-container.txt",
        )

    @property
    def digest(self) -> str:
        """What a built wheel folder depends on; a different digest means rebuild."""
        text = json.dumps(
            {
                "files": [
                    p.read_text()
                    for p in (self.requirements, self.nodeps, self.constraints, self.container)
                ],
                "python": PYTHON_VERSION,
                "platforms": PLATFORMS,
            }
        )
        return hashlib.sha256(text.encode()).hexdigest()


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a requirements file, comments and blanks dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a file of ``name==version`` lines (names canonical)."""
    found: dict[str, str] = {}
    for line in read_requirements(path):
        requirement = Requirement(line)
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(versions) != 1:
            raise ValueError(f"{path}: {line!r} is not pinned with ==")
        found[canonicalize_name(requirement.name)] = versions[0]
    return found


def platform_options() -> list[str]:
    """pip's options for the container's platform: binary wheels only, CPython 3.12."""
    options = ["--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform_tag in PLATFORMS:
        options += ["--platform", platform_tag]
    return [*options, "--only-binary=:all:"]


def _pip(arguments: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def resolve(
    requirements: Sequence[str], constraint_files: Sequence[Path], extra_requirements: Path
) -> dict[str, str]:
    """What pip installs for ``requirements`` in the container: ``name -> version``.

    ``extra_requirements`` holds what the container preinstalls, as requirements: pip
    then resolves against the container's TensorFlow and its dependencies as they are.
    Raises :class:`ResolutionConflictError` with pip's explanation when nothing fits.
    """
    with tempfile.TemporaryDirectory(prefix="learnrec-resolve-") as scratch:
        listed = Path(scratch) / "requirements.txt"
        listed.write_text("\n".join(requirements) + "\n")
        report = Path(scratch) / "report.json"
        arguments = ["install", "--quiet", "--dry-run", "--ignore-installed"]
        arguments += ["--report", str(report), *platform_options()]
        arguments += ["-r", str(listed), "-r", str(extra_requirements)]
        for path in constraint_files:
            arguments += ["-c", str(path)]
        completed = _pip(arguments)
        if completed.returncode != 0:
            raise ResolutionConflictError(completed.stderr.strip()[-4000:])
        installs = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): str(item["metadata"]["version"])
        for item in installs
    }


def job_lock(inputs: JobRequirements) -> tuple[dict[str, str], dict[str, str]]:
    """The pinned sets the jobs install: with dependencies, and without.

    Everything the resolution needs except what the container already has at the same
    version. The no-deps packages take their versions from the tested set.
    """
    resolved = resolve(
        read_requirements(inputs.requirements), [inputs.constraints], inputs.container
    )
    kept = pins(inputs.container)
    mismatch = {n: v for n, v in kept.items() if resolved.get(n) != v}
    if mismatch:
        raise ResolutionConflictError(f"the container's packages would be replaced: {mismatch}")
    lock = {n: v for n, v in sorted(resolved.items()) if n not in kept}
    tested = pins(inputs.constraints)
    nodeps: dict[str, str] = {}
    for line in read_requirements(inputs.nodeps):
        name = canonicalize_name(Requirement(line).name)
        if name not in tested:
            raise ResolutionConflictError(f"{name} has no tested version in {inputs.constraints}")
        nodeps[name] = tested[name]
    return lock, nodeps


def _write_lock(path: Path, lock: dict[str, str]) -> None:
    path.write_text("".join(f"{name}=={version}\n" for name, version in lock.items()))


def build_wheels(inputs: JobRequirements, out: Path) -> Path:
    """Download the jobs' wheels into ``out`` (with the two lock files), or reuse them.

    Built in a sibling folder and swapped in at the end, so an interrupted download never
    leaves a half folder that a later stamp check would take for complete.
    """
    digest = inputs.digest
    stamp = out / STAMP_FILE
    if stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
        return out
    lock, nodeps = job_lock(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheels-", dir=out.parent))
    try:
        _write_lock(staging / LOCK, lock)
        _write_lock(staging / LOCK_NODEPS, nodeps)
        arguments = ["download", "--quiet", "--no-deps", "--dest", str(staging)]
        arguments += [*platform_options(), "-r", str(staging / LOCK)]
        arguments += ["-r", str(staging / LOCK_NODEPS)]
        completed = _pip(arguments)
        if completed.returncode != 0:
            detail = completed.stderr.strip()[-3000:]
            raise ResolutionConflictError(f"pip download failed: {detail}")
        (staging / STAMP_FILE).write_text(json.dumps({"digest": digest}))
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _files(repo: Path, bootstrap_dir: Path, wheels: Path | None) -> Iterator[tuple[str, Path]]:
    for folder in PACKAGES:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file() and not SKIP_DIRS.intersection(path.parts) and path.suffix != ".pyc":
                yield path.relative_to(repo).as_posix(), path
    for path in sorted(bootstrap_dir.iterdir()):
        if path.is_file():
            yield path.name, path
    if wheels is not None:
        for path in sorted(wheels.iterdir()):
            if path.is_file() and path.name != STAMP_FILE:
                yield f"{WHEELS}/{path.name}", path


def build_source_archive(
    repo: Path, bootstrap_dir: Path, out: Path, *, with_wheels: bool = True
) -> Path:
    """Write ``out`` (a ``.tar.gz``) unless it already holds exactly these bytes.

    The wheels are kept next to it (``<out's folder>/wheels``) and reused; only a test of
    the archive's layout leaves them out (``with_wheels=False``), a deployment never does.
    """
    wheels = (
        build_wheels(JobRequirements.of_repo(repo), out.parent / WHEELS) if with_wheels else None
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in _files(repo, bootstrap_dir, wheels):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as data:
                archive.addfile(info, data)
    # Wheels are zip files already: a middle level costs little time and loses nothing.
    content = gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)
    if not out.is_file() or out.read_bytes() != content:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
    return out
