"""The local AWS: moto server on 127.0.0.1:4566, with the stage's resources in it.

Tests, ``make demo`` and the benchmarks share this: :func:`local_aws` starts moto server
only when nothing answers on the port, and stops only what it started, so a developer's
long-running server (``make demo``) is reused and never killed by a test run.
:func:`create_resources` makes the same resources, under the same names, as the CDK app
makes for the stage (see :mod:`learnrec.stages`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from learnrec.stages import EMPTY_JWT_SECRET, LOCAL_REGION, ResourceNames

HOST = "127.0.0.1"
# Another port lets two checkouts run their suites side by side without sharing a server.
PORT = int(os.environ.get("LEARNREC_LOCAL_AWS_PORT", "4566"))
ENDPOINT = f"http://{HOST}:{PORT}"
# moto runs Lambda code without Docker and Step Functions state machines for real.
MOTO_CONFIG = {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}}
# moto accepts any credentials; setting them keeps boto3 from looking for real ones.
LOCAL_ENVIRONMENT = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
}


class LocalAwsError(RuntimeError):
    """The local AWS could not be started or reached."""


def is_listening(host: str = HOST, port: int = PORT, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def configure(endpoint: str = ENDPOINT) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps(MOTO_CONFIG).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def moto_command() -> list[str]:
    """moto server from this interpreter's environment (not whatever ``moto_server`` comes
    first on PATH), so the installed, pinned moto runs, with a stable command line."""
    if importlib.util.find_spec("moto.server") is None:
        raise LocalAwsError("moto server is not installed: install the dev extras (make install)")
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(PORT)]


@dataclass
class LocalAws:
    """A handle on the running local AWS; ``process`` is set only if we started it."""

    endpoint: str
    process: subprocess.Popen[bytes] | None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=LOCAL_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(log_file: Path | None = None, timeout_s: float = 30.0) -> LocalAws:
    """Reuse a local AWS on the port, or start moto server there and wait until it answers."""
    if is_listening():
        configure()
        return LocalAws(ENDPOINT, None)
    output: Any = log_file.open("ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        moto_command(),
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in a test run must not take it down mid-request
    )
    deadline = time.monotonic() + timeout_s
    while not is_listening():
        if process.poll() is not None:
            raise LocalAwsError(f"moto server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise LocalAwsError(f"moto server did not answer on {HOST}:{PORT} in {timeout_s}s")
        time.sleep(0.1)
    configure()
    return LocalAws(ENDPOINT, process)


@contextmanager
def local_aws(log_file: Path | None = None) -> Iterator[LocalAws]:
    """The local AWS for the duration of the block; stops it after only if it started it."""
    aws = start(log_file)
    try:
        yield aws
    finally:
        aws.stop()


@contextmanager
def local_environment() -> Iterator[None]:
    """boto3 clients made inside the block talk to the local AWS."""
    saved = {name: os.environ.get(name) for name in LOCAL_ENVIRONMENT}
    os.environ.update(LOCAL_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exists(describe: Any) -> bool:
    """Whether ``describe()`` finds its resource: a not-found error says no."""
    from botocore.exceptions import ClientError

    try:
        describe()
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if (
            "NotFound" in code
            or code in {"404", "NoSuchBucket", "ValidationException"}
            or (status == 404)
        ):
            return False
        raise
    return True


def create_resources(aws: LocalAws, names: ResourceNames, shards: int = 1) -> dict[str, str]:
    """The stage's bucket, stream, dead-letter queue, secrets and model package group.

    The JWT secret starts with an empty key set, as in a fresh deployment.

    Idempotent: an existing resource is kept as it is, so a second ``make demo`` finds
    its data again.
    """
    # Existence is asked by name, never read off a list: list calls answer one page (100
    # streams or secrets), and a long test session makes more than that.
    s3 = aws.client("s3")
    if not _exists(lambda: s3.head_bucket(Bucket=names.data_bucket)):
        s3.create_bucket(Bucket=names.data_bucket)
    kinesis = aws.client("kinesis")
    if not _exists(lambda: kinesis.describe_stream_summary(StreamName=names.events_stream)):
        kinesis.create_stream(StreamName=names.events_stream, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=names.events_stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
    queue_url = aws.client("sqs").create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
    secrets = aws.client("secretsmanager")
    if not _exists(lambda: secrets.describe_secret(SecretId=names.user_id_hash_secret)):
        secrets.create_secret(Name=names.user_id_hash_secret, SecretString=os.urandom(32).hex())
    if not _exists(lambda: secrets.describe_secret(SecretId=names.jwt_secret)):
        # As the stack creates it: no keys until `learnrec deploy bootstrap` adds some.
        secrets.create_secret(Name=names.jwt_secret, SecretString=EMPTY_JWT_SECRET)
    sagemaker = aws.client("sagemaker")
    group = names.model_package_group
    if not _exists(lambda: sagemaker.describe_model_package_group(ModelPackageGroupName=group)):
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    return {
        "bucket": names.data_bucket,
        "stream": names.events_stream,
        "dead_letter_queue_url": queue_url,
        "user_id_hash_secret": names.user_id_hash_secret,
        "jwt_secret": names.jwt_secret,
        "model_package_group": names.model_package_group,
    }


def prepare_stage(stage: str, out: TextIO) -> None:
    """Use ``AWS_ENDPOINT_URL`` if set; otherwise the local AWS, started if nothing answers,
    with the stage's resources (what ``learnrec pipeline run`` needs before its first step)."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return
    local = start()
    os.environ.update(LOCAL_ENVIRONMENT)
    if local.started_here:
        print(f"started moto server on {ENDPOINT} (it keeps running)", file=out)
    create_resources(local, ResourceNames(stage))
