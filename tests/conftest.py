"""Fixtures every test folder may use: the local AWS and the session's trained model.

Tests are marked by what they use, so that the tiers in the Makefile can select them:
a test that uses the trained model (``quality_run``, and so ``api`` and the e2e stacks)
is marked ``training``, one that uses the moto server ``local_aws``. Markers set by hand
(``postgres``, ``training`` on modules that train models of their own) stay as they are.

The trained model is trained once per session, for every folder's tests.

The local AWS is the moto server on 127.0.0.1:4566 (``LEARNREC_LOCAL_AWS_PORT``).

The server is started once per test session, only by tests that ask for it, and stopped
at the end of the session if this run started it; a server already running (``make
demo``) is reused and left alone. Each test gets resources under a stage name of its own,
so tests never see each other's streams, buckets or queues.

boto3 clients made without an endpoint reach the local AWS only inside tests that ask
for ``local_env`` (``aws_names`` implies it): the rest of the suite, including tests
that use moto's in-process ``mock_aws``, never sees ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from learnrec.stages import ResourceNames
from learnrec_dev.local.aws import LOCAL_ENVIRONMENT, LocalAws, create_resources, local_aws

if TYPE_CHECKING:
    from learnrec.data.dataset import Dataset

# Fixture -> the marker every test that uses it (directly or through another) gets.
MARKED_BY_FIXTURE = {"quality_run": "training", "local_aws_server": "local_aws"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in MARKED_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    from functional.small_models import small_sample

    return small_sample()


@pytest.fixture(scope="session")
def quality_run(small_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quality benchmark's output (metrics, report, ``bundle/``) on the small sample."""
    from functional.small_models import train_quality_run

    return train_quality_run(small_dataset, tmp_path_factory.mktemp("quality"))


@pytest.fixture(scope="session")
def local_aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with local_aws(log_file=log) as aws:
        yield aws


@pytest.fixture
def local_env(local_aws_server: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """boto3's default clients talk to the local AWS for the duration of the test."""
    for name, value in LOCAL_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return local_aws_server


@pytest.fixture
def aws_names(local_env: LocalAws) -> ResourceNames:
    """A fresh stage's resources (bucket, stream, queue, secret, model group) in the local AWS."""
    names = ResourceNames(stage=f"t{uuid.uuid4().hex[:10]}")
    create_resources(local_env, names)
    return names
