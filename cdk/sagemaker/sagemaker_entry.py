"""Bootstrap of every learnrec SageMaker job (the root of the source archive).

Training jobs run it as ``sagemaker_program`` with hyperparameters as ``--name value``
(``--learnrec_entry_point training/train_ranking.py`` says which script); processing
jobs as ``sagemaker_entry.py <script> <args...>``. It installs learnrec's dependencies
into the container from the wheels that travel in this archive (``wheels/``, pinned by
``wheels/requirements.lock``), never from an index: a job needs no internet access and
runs the versions the tests run. The container's TensorFlow stays (TFRS and tf-keras go
in without dependencies, or pip would pull a second TensorFlow). Then it builds
``DATABASE_URL`` from ``DATABASE_SECRET_ARN`` so no password is ever part of a job's
definition, and runs the script as ``__main__`` with the remaining arguments.
Standard library and boto3 only: nothing else is installed yet when it starts.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY_FLAG = "--learnrec_entry_point"
WHEELS = HERE / "wheels"
LOCK = WHEELS / "requirements.lock"
LOCK_NODEPS = WHEELS / "requirements-nodeps.lock"


def split_arguments(argv: list[str]) -> tuple[str, list[str]]:
    """The script to run and its arguments, for both ways SageMaker calls this file."""
    if ENTRY_FLAG in argv:
        at = argv.index(ENTRY_FLAG)
        return argv[at + 1], argv[:at] + argv[at + 2 :]
    if not argv:
        raise SystemExit(f"usage: {Path(__file__).name} <script> [args] or {ENTRY_FLAG} <script>")
    return argv[0], argv[1:]


def tensorflow_version() -> str:
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise SystemExit("the container has no TensorFlow: use a TensorFlow training image")


def pip_commands() -> list[list[str]]:
    """The two installs: offline (``--no-index``), from the archive's wheel folder only."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    offline = ["--no-index", "--find-links", str(WHEELS)]
    return [
        [*base, *offline, "-r", str(LOCK)],
        [*base, *offline, "--no-deps", "-r", str(LOCK_NODEPS)],
    ]


def check_tf_keras(lock_nodeps: Path, tensorflow: str) -> None:
    """tf-keras must match the container's TensorFlow, or training fails much later."""
    for line in lock_nodeps.read_text().split():
        name, _, version = line.partition("==")
        if name.replace("_", "-") != "tf-keras":
            continue
        if version.split(".")[:2] != tensorflow.split(".")[:2]:
            raise SystemExit(
                f"tf-keras {version} does not fit the container's TensorFlow {tensorflow}: "
                "the training image (training_image_tag) and requirements/constraints.txt "
                "must carry the same TensorFlow"
            )


def install() -> None:
    check_tf_keras(LOCK_NODEPS, tensorflow_version())
    for command in pip_commands():
        subprocess.run(command, check=True)


def database_url(secret_arn: str) -> str:
    """The job's ``DATABASE_URL`` from the Aurora secret, as the functions build theirs.

    Called after :func:`install`, when learnrec (in this source archive) can be imported.
    """
    sys.path.insert(0, str(HERE))
    from learnrec.config import Settings
    from learnrec.storage.url import database_url as from_settings

    return from_settings(Settings(database_secret_arn=secret_arn))


def main(argv: list[str]) -> None:
    script, arguments = split_arguments(argv)
    install()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    secret = os.environ.get("DATABASE_SECRET_ARN")
    if secret and not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = database_url(secret)
    sys.path.insert(0, str(HERE))
    sys.argv = [str(HERE / script), *arguments]
    runpy.run_path(str(HERE / script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
