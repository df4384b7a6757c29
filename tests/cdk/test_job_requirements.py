"""The SageMaker jobs run what the tests run, installed offline from their source archive.

The jobs' requirements are resolved with pip for the training container (CPython 3.12,
manylinux x86_64) against the TensorFlow it preinstalls; a conflict fails here, not at
the first retraining in AWS. Needs PyPI (the first run downloads the TensorFlow wheels'
metadata with them, later runs use pip's cache).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from learnrec_cdk.job_source import (
    LOCK,
    LOCK_NODEPS,
    PLATFORMS,
    WHEELS,
    JobRequirements,
    ResolutionConflictError,
    job_lock,
    pins,
    platform_options,
    resolve,
)
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from .conftest import REPO
from .test_job_source import bootstrap

INPUTS = JobRequirements.of_repo(REPO)
# Every tag pip accepts in the container: CPython 3.12 on x86_64 glibc <= 2.34.
CONTAINER_TAGS: frozenset[Tag] = frozenset(
    [
        *cpython_tags((3, 12), platforms=PLATFORMS),
        *compatible_tags((3, 12), "cp312", platforms=PLATFORMS),
    ]
)


@pytest.fixture(scope="module")
def lock() -> tuple[dict[str, str], dict[str, str]]:
    return job_lock(INPUTS)


def test_job_requirements_resolve_against_the_containers_tensorflow(
    lock: tuple[dict[str, str], dict[str, str]],
) -> None:
    with_deps, nodeps = lock
    container = pins(INPUTS.container)
    tested = pins(INPUTS.constraints)
    # The container keeps its TensorFlow and what TensorFlow depends on ...
    assert not set(container) & set(with_deps)
    assert {"tensorflow-cpu", "numpy", "ml-dtypes", "keras"} <= set(container)
    # ... and the tests run those same versions (pip freeze, which wrote the tested set,
    # leaves out the packaging tools).
    runtime = {n: v for n, v in container.items() if n not in {"setuptools", "wheel"}}
    assert {n: tested.get(n) for n in runtime} == runtime
    # Everything the jobs install is at its tested version.
    assert {n: v for n, v in with_deps.items() if n in tested} == {
        n: tested[n] for n in with_deps if n in tested
    }
    assert {"onnx", "tf2onnx", "onnxruntime", "xgboost-cpu", "psycopg-binary"} <= set(with_deps)
    assert set(nodeps) == {"tensorflow-recommenders", "tf-keras"}
    major_minor = container["tensorflow-cpu"].split(".")[:2]
    assert nodeps["tf-keras"].split(".")[:2] == major_minor


def test_the_check_reports_a_conflict_with_the_containers_tensorflow(tmp_path: Path) -> None:
    """The defect this check exists for: onnx 1.23.2 (protobuf >= 6.31.1) in the
    TensorFlow 2.19 container (protobuf < 6) cannot be installed, and pip says why."""
    container = tmp_path / "tf-2.19-container.txt"
    container.write_text("tensorflow-cpu==2.19.0\n")
    with pytest.raises(ResolutionConflictError, match="protobuf"):
        resolve(["onnx==1.23.2"], [], container)


def _archive(stack_inputs: Any) -> dict[str, bytes]:
    data = Path(stack_inputs.job_source_archive).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith(f"{WHEELS}/")
        }


def _locked(text: str) -> dict[str, str]:
    return {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in text.split())
    }


def test_archive_carries_every_wheel_the_jobs_install(
    stack_inputs: Any, lock: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    files = _archive(stack_inputs)  # the archive the stack deploys (build/lambda/sagemaker)
    with_deps, nodeps = lock
    assert _locked(files[f"{WHEELS}/{LOCK}"].decode()) == with_deps
    assert _locked(files[f"{WHEELS}/{LOCK_NODEPS}"].decode()) == nodeps
    shipped: dict[str, str] = {}
    for name in files:
        if name.endswith(".whl"):
            project, version, _, tags = parse_wheel_filename(name.rsplit("/", 1)[1])
            assert tags & CONTAINER_TAGS, f"{name} does not install in the container"
            shipped[project] = str(version)
    assert shipped == {**with_deps, **nodeps}
    # And pip, offline, finds each of them in the folder for the container's platform.
    folder = tmp_path / WHEELS
    folder.mkdir()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"),
            *("--no-deps", "--no-index", "--find-links", str(folder), *platform_options()),
            *("-r", str(folder / LOCK), "-r", str(folder / LOCK_NODEPS)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_bootstrap_installs_offline_from_the_archive() -> None:
    entry = bootstrap()
    commands = entry.pip_commands()
    assert len(commands) == 2
    for command in commands:
        assert command[1:4] == ["-m", "pip", "install"]
        assert "--no-index" in command
        assert command[command.index("--find-links") + 1] == str(entry.WHEELS)
        assert not {"-i", "--index-url", "--extra-index-url"} & set(command)
        requirements = Path(command[command.index("-r") + 1])
        assert requirements.parent == entry.WHEELS
        assert requirements.name in {LOCK, LOCK_NODEPS}
    assert "--no-deps" in commands[1]


def test_bootstrap_refuses_tf_keras_for_another_tensorflow(tmp_path: Path) -> None:
    entry = bootstrap()
    locked = tmp_path / LOCK_NODEPS
    locked.write_text("tensorflow-recommenders==0.7.7\ntf-keras==2.21.0\n")
    entry.check_tf_keras(locked, "2.21.0")
    with pytest.raises(SystemExit, match="training_image_tag"):
        entry.check_tf_keras(locked, "2.19.0")
