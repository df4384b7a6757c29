"""Every request the retraining state machine sends is one its target API accepts.

The synthesized definition is evaluated, not read: its CloudFormation tokens resolved
to physical values, its states walked from ``StartAt`` with the JSONPaths and intrinsic
functions evaluated (:mod:`.asl`), for run documents made by the real ``start`` code
(the pipeline function's handler, on moto's S3) in every mode, with and without
hyperparameter overrides, up to the largest overrides a run request may carry. Each
SageMaker and Lambda request is then checked against botocore's service model, both by
botocore's own validator and by :func:`.strict_validation.strict_errors`, which adds
the lengths, patterns, enums and sizes the service enforces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator
from moto import mock_aws

from learnrec.pipeline.definition import (
    MAX_HYPERPARAMETER_KEY,
    MAX_HYPERPARAMETER_VALUE,
    PIPELINE,
    Mode,
    StepKind,
)
from learnrec.pipeline.functions import handle
from learnrec.serving.model_store import Pointer, S3ModelStore

from .asl import Execution, PhysicalValues, TaskCall, resolve
from .conftest import Synthesized
from .strict_validation import strict_errors

INTEGRATIONS = {
    "sagemaker:createTrainingJob.sync": ("sagemaker", "CreateTrainingJob"),
    "sagemaker:createProcessingJob.sync": ("sagemaker", "CreateProcessingJob"),
}
# The longest overrides RunRequest.validate lets through (SageMaker's own limits).
LARGEST = {
    "k" * MAX_HYPERPARAMETER_KEY: "v" * MAX_HYPERPARAMETER_VALUE,
    "notes": "x" * MAX_HYPERPARAMETER_VALUE,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    request: dict[str, Any]
    active: str | None = None


SCENARIOS = [
    Scenario("full, first run", {"mode": "full"}),
    Scenario(
        "full, overrides, active model",
        {
            "mode": "full",
            "window_days": 14,
            "hyperparameters": {
                "train_retrieval": {"epochs": 30, "learning-rate": "0.05"},
                "train_ranking": {"n-estimators": "400"},
            },
        },
        active="20261101T020000Z",
    ),
    Scenario("ranking", {"mode": "ranking"}, active="20261101T020000Z"),
    Scenario(
        "ranking, largest overrides",
        {
            "mode": "ranking",
            "window_end": "2026-11-08T00:00:00Z",
            "hyperparameters": {"train_ranking": LARGEST},
        },
        active="20261107T020000Z",
    ),
    Scenario(
        "full, largest overrides",
        {"mode": "full", "hyperparameters": {"train_retrieval": LARGEST, "train_ranking": LARGEST}},
        active="20261107T020000Z",
    ),
]


def machine(synth: Synthesized) -> dict[str, Any]:
    """The state machine's definition with every token at its physical value."""
    resource = next(iter(synth.resources("AWS::StepFunctions::StateMachine").values()))
    text = resolve(resource["Properties"]["DefinitionString"], PhysicalValues(synth.template))
    assert isinstance(text, str)
    definition: dict[str, Any] = json.loads(text)
    return definition


def target(call: TaskCall) -> tuple[str, str, dict[str, Any]]:
    """(service, operation, API request) for a Task state's call."""
    if call.resource.startswith("arn:aws:states:::"):
        integration = call.resource.split(":::", 1)[1]
        service, operation = INTEGRATIONS[integration]
        return service, operation, call.request
    if call.resource.startswith("arn:aws:lambda:"):
        # The function's ARN as the resource: Step Functions invokes it with the
        # state's parameters as the payload and passes its answer on (payload only).
        return "lambda", "Invoke", {"FunctionName": call.resource, "Payload": call.request}
    raise AssertionError(f"{call.state}: no known integration for {call.resource}")


def api_errors(service: str, operation: str, request: dict[str, Any]) -> list[str]:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    wire = dict(request)
    if operation == "Invoke":
        wire["Payload"] = json.dumps(request["Payload"]).encode()
    report = ParamValidator().validate(wire, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    return errors + strict_errors(shape, wire, operation)


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process moto: the real start code writes its run document here."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("s3", region_name="eu-west-1")


def execute(prod: Synthesized, s3: Any, scenario: Scenario) -> Execution:
    bucket = prod.config.names.data_bucket
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    if scenario.active:
        store = S3ModelStore(bucket, "models", s3)
        store.write_pointer(Pointer(scenario.active, (), "2026-11-01T02:00:00Z"))

    def answer(call: TaskCall) -> Any:
        service, operation, request = target(call)
        errors = api_errors(service, operation, request)
        assert not errors, f"{scenario.name}: {call.state} -> {operation}:\n" + "\n".join(errors)
        if service != "lambda":
            # A .sync job answers with its Describe*Job output: the request, completed.
            kind = operation.removeprefix("Create")
            return {
                **request,
                f"{kind}Arn": f"arn:aws:sagemaker:::{kind}",
                f"{kind}Status": "Completed",
            }
        event = request["Payload"]
        if event["step"] == "start":
            return handle(event, clients={"s3": s3})  # the real run document
        # register and promote act on artifacts the jobs did not write here; their
        # answers only steer the Choices that follow.
        return {"step": event["step"], "ok": True, "promoted": True}

    execution = Execution(machine(prod), answer)
    execution.run(scenario.request)
    return execution


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_request_of_a_run_is_valid_for_its_api(
    prod: Synthesized, moto_s3: Any, scenario: Scenario
) -> None:
    execution = execute(prod, moto_s3, scenario)
    assert execution.outcome == "Succeed: new model active", execution.path
    mode = Mode(scenario.request["mode"])
    tasks = [call.state for call in execution.calls]
    assert tasks == ["start", *(s.name for s in PIPELINE if s.runs_in(mode))]
    by_state = {call.state: call for call in execution.calls}
    run = by_state["register"].request["run"]
    assert run["mode"] == mode.value and run["active_version"] == scenario.active
    # The run document is the start step's answer and each processing job's input.
    for step in PIPELINE:
        if not step.runs_in(mode) or step.kind is not StepKind.PROCESSING:
            continue
        inputs = {
            i["InputName"]: i["S3Input"] for i in by_state[step.name].request["ProcessingInputs"]
        }
        uri = inputs["run"]["S3Uri"]
        assert uri == f"s3://{run['bucket']}/pipeline/{run['run_id']}/run/"
        key = uri.removeprefix(f"s3://{run['bucket']}/") + "run.json"
        stored = json.loads(moto_s3.get_object(Bucket=run["bucket"], Key=key)["Body"].read())
        assert stored == run
    for step in PIPELINE:
        if step.runs_in(mode) and step.kind is StepKind.TRAINING:
            hyper = by_state[step.name].request["HyperParameters"]
            overrides = scenario.request.get("hyperparameters", {}).get(step.name, {})
            assert {k: hyper[k] for k in overrides} == {k: str(v) for k, v in overrides.items()}
            for name in step.run_hyperparameters:
                assert hyper[name] == run[name]
