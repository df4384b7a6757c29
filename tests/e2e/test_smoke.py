"""``learnrec deploy smoke`` against the local AWS and the local gateway, as after a deploy.

The stage's resources come from ``create_resources`` (secrets as the stack writes them),
the retraining state machine is the CDK app's own definition (``build_definition``,
synthesized here and created in moto), the API is the real handler behind the local
gateway, and events travel Kinesis -> poller -> the real ingest handler -> the history.

A fresh stage fails the smoke (503 on /health, no state machine yet); after
``learnrec deploy bootstrap`` and the state machine, it passes. Moto runs the execution,
but its Lambda runs no code without Docker and its SageMaker ``.sync`` tasks do no work,
so only "started and states read back" is checked here; ``--wait`` success needs AWS.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import activate_bundle, catalog_database
from learnrec.config import get_settings
from learnrec.data.dataset import Dataset
from learnrec.serving.readiness import ContextLoader
from learnrec.stages import LOCAL_ACCOUNT, LOCAL_REGION, ResourceNames
from learnrec.storage import CatalogStore, make_engine
from learnrec_dev.cli import main
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.gateway import REPO, Gateway, default_handler_path, load_handler
from learnrec_dev.local.poller import KinesisPoller


@dataclass
class Deployment:
    names: ResourceNames
    gateway: Gateway
    loader: ContextLoader[Any]
    clock: list[float]


def _resolve(value: Any) -> Any:
    """CloudFormation's ``Fn::Join`` and ``Ref AWS::Partition``, all a definition uses."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_resolve(p)) for p in parts)
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    if isinstance(value, str):
        return value
    raise AssertionError(f"unresolved CloudFormation value in the definition: {value}")


def create_state_machine(aws: LocalAws, names: ResourceNames) -> str:
    """The stage's retraining state machine as the CDK app defines it, in the local AWS."""
    sys.path.insert(0, str(REPO / "cdk"))
    from aws_cdk import App, Duration, Environment, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template
    from learnrec_cdk.training import JobSettings, build_definition

    iam = aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName=names.prefix, AssumeRolePolicyDocument=json.dumps(trust))
    role_arn = role["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.write(REPO / "functions" / "pipeline" / "handler.py", "handler.py")
    function_arn = aws.client("lambda").create_function(
        FunctionName=names.pipeline_function,
        Runtime="python3.12",
        Role=role_arn,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]

    app = App()
    stack = Stack(app, "Retrain", env=Environment(account=LOCAL_ACCOUNT, region=LOCAL_REGION))
    jobs = JobSettings(
        image="763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19.0-cpu",
        instance_type="ml.m5.xlarge",
        role_arn=role_arn,
        bucket=names.data_bucket,
        source_uri=f"s3://{names.data_bucket}/source/sourcedir.tar.gz",
        subnet_ids=["subnet-0123456789abcdef0"],
        security_group_ids=["sg-0123456789abcdef0"],
        environment={"S3_BUCKET": names.data_bucket},
        max_runtime=Duration.hours(3),
    )
    start = build_definition(
        stack,
        jobs=jobs,
        function=lambda_.Function.from_function_arn(stack, "Pipeline", function_arn),
        request_defaults={"stage": names.stage, "bucket": names.data_bucket},
    )
    sfn.StateMachine(stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(start))
    template = Template.from_stack(stack)
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    definition = _resolve(machine["Properties"]["DefinitionString"])
    created = aws.client("stepfunctions").create_state_machine(
        name=names.state_machine, definition=definition, roleArn=role_arn
    )
    return str(created["stateMachineArn"])


@pytest.fixture
def deployment(
    aws_names: ResourceNames,
    local_env: LocalAws,
    quality_run: Path,
    small_dataset: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    names = aws_names
    activate_bundle(local_env, names, quality_run / "bundle", tmp_path)
    database_url = catalog_database(tmp_path, small_dataset)

    secrets = local_env.client("secretsmanager")
    queue = local_env.client("sqs").get_queue_url(QueueName=names.dead_letter_queue)
    for name, value in {
        "DATABASE_URL": database_url,
        "MODEL_STORE": names.model_store_url,
        "JWT_SECRET_ID": secrets.describe_secret(SecretId=names.jwt_secret)["ARN"],
        "USER_ID_HASH_SECRET_ID": secrets.describe_secret(SecretId=names.user_id_hash_secret)[
            "ARN"
        ],
        "KINESIS_STREAM_NAME": names.events_stream,
        "S3_BUCKET": names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue["QueueUrl"],
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("USER_ID_HASH_KEY", "JWT_JWKS", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()

    spec = importlib.util.spec_from_file_location(
        f"api_{uuid.uuid4().hex[:8]}", default_handler_path()
    )
    assert spec and spec.loader
    api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api)
    loader: ContextLoader[Any] = api.app.state.context_loader
    clock = [0.0]
    loader.clock = lambda: clock[0]
    ingest = load_handler(REPO / "functions" / "ingest" / "handler.py")
    poller = KinesisPoller(names.events_stream, ingest, kinesis=local_env.client("kinesis"))
    stop = threading.Event()
    polling = threading.Thread(target=poller.run, args=(stop,), name="poller", daemon=True)
    gateway = Gateway(api.handler, port=0)
    gateway.start()
    polling.start()
    try:
        yield Deployment(names, gateway, loader, clock)
    finally:
        stop.set()
        polling.join(timeout=30)
        gateway.stop()
        get_settings.cache_clear()


def test_the_smoke_fails_a_fresh_stage_and_passes_once_bootstrapped(
    deployment: Deployment, local_env: LocalAws, tmp_path: Path
) -> None:
    names, url = deployment.names, deployment.gateway.url
    out = tmp_path / "smoke.json"
    args = ["deploy", "smoke", "--stage", names.stage, "--api-url", url, "--out", str(out)]

    assert main(args) == 1
    failed = json.loads(out.read_text())
    checks = {c["name"]: c for c in failed["checks"]}
    assert not checks["health"]["ok"] and "503 (Retry-After " in checks["health"]["detail"]
    assert "learnrec deploy bootstrap --stage" in checks["health"]["detail"]
    assert not checks["retraining"]["ok"]  # no state machine yet

    key = tmp_path / "keys" / "jwt.pem"
    assert main(["deploy", "bootstrap", "--stage", names.stage, "--private-key-out", str(key)]) == 0
    machine = create_state_machine(local_env, names)
    deployment.clock[0] += deployment.loader.retry_after_s()  # the loader's next attempt is due

    # Moto fails the execution (its Lambda runs no code): that fails the check...
    # --wait: the check reads the execution once it has ended, whatever moto's pace.
    with_key = [*args, "--private-key", str(key), "--event-timeout", "60", "--wait"]
    with_key += ["--execution-timeout", "120"]
    assert main(with_key) == 1
    report = json.loads(out.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert [n for n, c in checks.items() if not c["ok"]] == ["retraining"]
    assert "ended FAILED" in checks["retraining"]["detail"]
    # ...unless told that the local AWS cannot run the steps' work.
    assert main([*with_key, "--accept-failed-execution"]) == 0
    report = json.loads(out.read_text())
    assert report["ok"], report
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["health", "token", "recommendation", "event round trip", "retraining"]
    assert "in the learner's history" in checks["event round trip"]["detail"]
    execution = report["execution"]
    assert execution["arn"].startswith(machine.replace(":stateMachine:", ":execution:"))
    states = {s["name"]: s for s in execution["states"]}
    assert execution["states"][0]["name"] == "start"
    # What moto does: the start step's Lambda answers moto's canned text, not the run.
    assert states["start"]["status"] == "failed" and "Expecting value" in states["start"]["error"]
    assert states["run failed"]["status"] == "failed"

    # The execution's input was the schedule's: {"mode": "ranking"}.
    sfn = local_env.client("stepfunctions")
    described = sfn.describe_execution(executionArn=execution["arn"])
    assert json.loads(described["input"]) == {"mode": "ranking"}

    # The synthetic learner was erased again.
    store = CatalogStore(make_engine(get_settings().database_url))
    from learnrec.identity import UserIdHasher

    hash_key = local_env.client("secretsmanager").get_secret_value(
        SecretId=names.user_id_hash_secret
    )["SecretString"]
    learner_key = UserIdHasher(hash_key.encode())(report["learner"])
    assert store.learner_context(learner_key).history == []
    store.engine.dispose()


def test_seed_sends_the_sample_catalog_and_events_through_the_api(
    deployment: Deployment, local_env: LocalAws, tmp_path: Path
) -> None:
    names, url = deployment.names, deployment.gateway.url
    key = tmp_path / "keys" / "jwt.pem"
    assert main(["deploy", "bootstrap", "--stage", names.stage, "--private-key-out", str(key)]) == 0
    deployment.clock[0] += deployment.loader.retry_after_s()
    seed = ["deploy", "seed", "--stage", names.stage, "--api-url", url, "--private-key", str(key)]
    sizes = ["--users", "40", "--items", "30", "--events", "600", "--seed", "3"]
    assert main([*seed, *sizes]) == 0
    from learnrec.data.generator import generate

    sent = len(generate(users=40, items=30, events=600, seed=3).events)

    # The events took the production path: API -> Kinesis -> ingest -> the S3 archive.
    s3 = local_env.client("s3")
    archived = 0
    for _ in range(120):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=names.data_bucket, Prefix="events/"
        )
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        archived = sum(_count_events(s3, names.data_bucket, k) for k in keys)
        if archived >= sent:
            break
        threading.Event().wait(0.5)
    assert archived == sent
    # A second run sends the same event ids: the ingest ledger keeps one of each.
    assert main([*seed, *sizes]) == 0
    threading.Event().wait(3)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=names.data_bucket, Prefix="events/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert sum(_count_events(s3, names.data_bucket, k) for k in keys) == sent


def _count_events(s3: Any, bucket: str, key: str) -> int:
    import gzip

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    text = gzip.decompress(body) if key.endswith(".gz") else body
    return sum(1 for line in text.splitlines() if line.strip())
