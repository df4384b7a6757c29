"""The GitHub deploy role: OIDC only, scoped to the repository's environments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from learnrec.stages import STAGES

from .conftest import ACCOUNT, REGION

REPOSITORY = "example-org/learnrec"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from aws_cdk import App, Validations
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks
    from learnrec_cdk.cicd import LearnrecCicdStack

    app = App()
    stack = LearnrecCicdStack(
        app,
        "learnrec-cicd",
        account=ACCOUNT,
        region=REGION,
        repository=REPOSITORY,
        environments=STAGES,
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()  # raises if a cdk-nag finding is not acknowledged
    return dict(Template.from_stack(stack).to_json())


def _role(template: dict[str, Any]) -> dict[str, Any]:
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 1
    role: dict[str, Any] = roles[0]
    return role


def test_only_the_repositorys_deployment_environments_can_assume_it(
    template: dict[str, Any],
) -> None:
    (statement,) = _role(template)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "Federated" in statement["Principal"]
    condition = statement["Condition"]["StringEquals"]
    assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert sorted(condition["token.actions.githubusercontent.com:sub"]) == sorted(
        f"repo:{REPOSITORY}:environment:{stage}" for stage in STAGES
    )
    assert "StringLike" not in statement["Condition"]  # no wildcard subjects


def test_no_long_lived_credentials_and_narrow_permissions(template: dict[str, Any]) -> None:
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert not kinds & {"AWS::IAM::User", "AWS::IAM::AccessKey"}
    policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
    actions = {
        action
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert actions == {
        "sts:AssumeRole",
        "sts:TagSession",
        "cloudformation:DescribeStacks",
        "states:StartExecution",
        "states:DescribeExecution",
        "states:GetExecutionHistory",
    }
    text = json.dumps(policies)
    assert '"Resource": "*"' not in text
    assert "role/cdk-hnb659fds-*" in text


def test_repository_must_be_owner_and_name() -> None:
    from aws_cdk import App
    from learnrec_cdk.cicd import LearnrecCicdStack

    with pytest.raises(ValueError, match="owner"):
        LearnrecCicdStack(
            App(), "x", account=ACCOUNT, region=REGION, repository="learnrec", environments=STAGES
        )
