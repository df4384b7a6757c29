"""The scheduled maintenance function in the synthesized template: one run at a time, on
the schedule of learnrec.privacy.maintenance, with the data access its sweeps need and
none that would let it move the active model or touch the pipeline's other data."""

from __future__ import annotations

import json
from typing import Any

from iam.actions import Request
from iam.evaluate import decide
from iam.recorder import Call
from iam.template import Template

from learnrec.privacy.maintenance import SCHEDULE_HOURS

from .conftest import ACCOUNT, REGION, Synthesized
from .test_least_privilege import _listify, role_statements

ROLE = "MaintenanceRole"


def _function(synth: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key, f["Properties"])
        for key, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("FunctionName") == name
    ]
    return found


def test_one_run_at_a_time_within_lambdas_limit_in_the_vpc(each_stage: Synthesized) -> None:
    names = each_stage.config.names
    _, function = _function(each_stage, names.maintenance_function)
    _, ingest = _function(each_stage, names.ingest_function)
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["Timeout"] == 15 * 60
    assert function["MemorySize"] == 1024
    assert function["VpcConfig"] == ingest["VpcConfig"]  # app subnets, app security group
    env = function["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "maintenance"
    assert env["DATABASE_HOST"] == ingest["Environment"]["Variables"]["DATABASE_HOST"]
    for variable in ("DATABASE_SECRET_ARN", "USER_ID_HASH_SECRET_ID", "DEAD_LETTER_QUEUE_URL"):
        assert env[variable] == ingest["Environment"]["Variables"][variable], variable
    assert env["MODEL_STORE"] == names.model_store_url and env["S3_BUCKET"] == names.data_bucket
    assert env["EVENT_RETENTION_DAYS"] == str(each_stage.config.event_retention_days)
    assert "DATABASE_URL" not in env


def test_the_schedule_invokes_it_every_few_hours(each_stage: Synthesized) -> None:
    key, _ = _function(each_stage, each_stage.config.names.maintenance_function)
    rules = [
        r["Properties"]
        for r in each_stage.resources("AWS::Events::Rule").values()
        if any(t["Arn"] == {"Fn::GetAtt": [key, "Arn"]} for t in r["Properties"]["Targets"])
    ]
    assert [r["ScheduleExpression"] for r in rules] == [f"rate({SCHEDULE_HOURS} hours)"]
    assert rules[0].get("State", "ENABLED") == "ENABLED"  # every stage: erasure is the law
    permissions = [
        p["Properties"]
        for p in each_stage.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [key, "Arn"]}
    ]
    assert [p["Principal"] for p in permissions] == ["events.amazonaws.com"]
    (config,) = [
        c["Properties"]
        for c in each_stage.resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": key}
    ]
    assert config["MaximumRetryAttempts"] == 1
    assert config["MaximumEventAgeInSeconds"] <= SCHEDULE_HOURS * 3600


def test_it_never_moves_the_active_model_nor_reads_the_pipelines_data(
    prod: Synthesized,
) -> None:
    template = Template(prod.template, ACCOUNT, REGION)
    bucket = f"arn:aws:s3:::{prod.config.names.data_bucket}"
    call = Call("maintenance", "s3", "probe", {}, REGION, 200)
    expected = {
        # what the sweeps do
        ("s3:GetObject", f"{bucket}/events/dt=2026-01-01/part.jsonl.gz"): True,
        ("s3:DeleteObjectVersion", f"{bucket}/dead-letters/x.json"): True,
        ("s3:PutObject", f"{bucket}/models/versions/20260101T000000Z/space.json"): True,
        ("s3:DeleteObjectVersion", f"{bucket}/pipeline/r1/dataset/part-0"): True,
        ("s3:GetObject", f"{bucket}/models/active.json"): True,
        # what they never need
        ("s3:PutObject", f"{bucket}/models/active.json"): False,
        ("s3:DeleteObjectVersion", f"{bucket}/models/active.json"): False,
        ("s3:GetObject", f"{bucket}/pipeline/r1/dataset/part-0"): False,
        ("s3:DeleteObjectVersion", f"{bucket}/pipeline/r1/metrics/part-0"): False,
        ("s3:PutObject", f"{bucket}/pipeline/r1/run.json"): False,
    }
    requests = [(call, Request(action, resource)) for action, resource in expected]
    decisions = decide(template, ROLE, requests)
    assert {(d.request.action, d.request.resource): d.allowed for d in decisions} == expected


def test_it_consumes_the_dead_letter_queue_and_reads_only_its_secrets(prod: Synthesized) -> None:
    statements = role_statements(prod, ROLE)
    actions = {a for s in statements for a in _listify(s["Action"])}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= actions
    assert not any(
        a.startswith(("sqs:Send", "kinesis:", "sagemaker:", "es:", "iam:")) for a in actions
    )
    secrets = [
        json.dumps(resource, sort_keys=True)
        for s in statements
        if "secretsmanager:GetSecretValue" in _listify(s["Action"])
        for resource in _listify(s["Resource"])
    ]
    names = prod.config.names
    _, function = _function(prod, names.maintenance_function)
    env = function["Environment"]["Variables"]
    assert sorted(secrets) == sorted(
        json.dumps(env[v], sort_keys=True)
        for v in ("DATABASE_SECRET_ARN", "USER_ID_HASH_SECRET_ID")
    )
