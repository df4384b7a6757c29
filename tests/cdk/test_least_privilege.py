"""Least privilege, read from the synthesized IAM policies of each role."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Synthesized

# Actions that AWS only accepts with Resource "*" (no resource-level permissions), or
# that are bounded by a condition instead (PutMetricData: the learnrec namespace).
STAR_RESOURCE_ALLOWED = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
    # Step Functions' log delivery to CloudWatch Logs (documented as Resource "*").
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(synth: Synthesized, role_name_part: str) -> list[dict[str, Any]]:
    """Allow statements of the inline policies attached to the one role whose logical id
    contains ``role_name_part``."""
    roles = [k for k in synth.resources("AWS::IAM::Role") if role_name_part in k]
    assert len(roles) == 1, (role_name_part, roles)
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        attached = [r.get("Ref") for r in policy["Properties"]["Roles"]]
        if roles[0] in attached:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, f"no policy attached to {roles[0]}"
    return [s for s in statements if s["Effect"] == "Allow"]


def grants(statements: list[dict[str, Any]], action_prefix: str) -> list[str]:
    """The resources (as JSON text) of statements with an action starting with the prefix."""
    return [
        json.dumps(s["Resource"])
        for s in statements
        if any(a.startswith(action_prefix) for a in _listify(s["Action"]))
    ]


def test_no_wildcard_actions_and_star_resources_only_where_aws_requires(
    each_stage: Synthesized,
) -> None:
    policies = list(each_stage.resources("AWS::IAM::Policy").values())
    roles = each_stage.resources("AWS::IAM::Role").values()
    documents = [p["Properties"]["PolicyDocument"] for p in policies]
    documents += [p["PolicyDocument"] for r in roles for p in r["Properties"].get("Policies", [])]
    assert documents
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = _listify(statement["Action"])
            assert "*" not in actions, statement
            assert not any(a.endswith(":*") for a in actions), statement
            if "*" in _listify(statement["Resource"]):
                assert set(actions) <= STAR_RESOURCE_ALLOWED, statement


def test_api_role_reads_models_and_writes_only_the_pointer(prod: Synthesized) -> None:
    statements = role_statements(prod, "ServingApiRole")
    writes = grants(statements, "s3:Put") + grants(statements, "s3:Delete")
    assert writes and all("models/active.json" in w for w in writes), writes
    assert not any("events/" in w or "pipeline/" in w for w in grants(statements, "s3:"))
    reads = grants(statements, "s3:GetObject")
    assert reads and all("models/*" in r for r in reads)
    actions = {a for s in statements for a in _listify(s["Action"])}
    assert not any(a.startswith(("sagemaker:", "states:", "sqs:")) for a in actions)
    assert "kinesis:PutRecords" in actions  # POST /events
    assert {"es:ESHttpPut", "es:ESHttpDelete"}.isdisjoint(actions)  # search only


def test_ingest_role_puts_only_raw_events(prod: Synthesized) -> None:
    statements = role_statements(prod, "IngestRole")
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _listify(s["Action"]))]
    assert s3
    for statement in s3:
        assert all(a.startswith(("s3:Put", "s3:Abort")) for a in _listify(statement["Action"]))
        resources = json.dumps(statement["Resource"])
        assert "/events/*" in resources or "/dead-letters/*" in resources, resources
    actions = {a for s in statements for a in _listify(s["Action"])}
    assert "sqs:SendMessage" in actions  # the dead-letter queue
    assert not any(a.startswith(("sagemaker:", "es:", "kinesis:Put")) for a in actions)


@pytest.mark.parametrize("role", ["ServingApiRole", "IngestRole"])
def test_serving_roles_cannot_start_or_pass_roles(prod: Synthesized, role: str) -> None:
    actions = {a for s in role_statements(prod, role) for a in _listify(s["Action"])}
    assert not any(a.startswith(("iam:", "states:StartExecution")) for a in actions)


def test_state_machine_passes_only_the_job_role_to_sagemaker(prod: Synthesized) -> None:
    statements = role_statements(prod, "StateMachineRole")
    passes = [s for s in statements if "iam:PassRole" in _listify(s["Action"])]
    assert len(passes) == 1
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    jobs = grants(statements, "sagemaker:Create")
    assert jobs and all("job/learnrec-*" in j for j in jobs)
