"""Fixtures every test folder may use: the local AWS (moto server on 127.0.0.1:4566).

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

import pytest

from learnrec.stages import ResourceNames
from learnrec_dev.local.aws import LOCAL_ENVIRONMENT, LocalAws, create_resources, local_aws


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
