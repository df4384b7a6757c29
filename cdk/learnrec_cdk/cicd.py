"""The role GitHub Actions deploys with: OpenID Connect, no long-lived keys.

``.github/workflows/cd.yml`` exchanges the job's OIDC token for this role
(``aws-actions/configure-aws-credentials``). The role can do three things: assume the
CDK bootstrap roles of this account and region (the CLI deploys through them, so the
deploy permissions are the bootstrap's, reviewed once per account), read the learnrec
stacks' outputs, and start and read retraining executions for the smoke check. Only
jobs of the named repository running in one of its deployment environments may assume
it: the token's ``sub`` is ``repo:<owner>/<name>:environment:<stage>``, so a workflow
on a fork or an unprotected branch without an environment gets nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, Environment, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .nag import acknowledge

GITHUB_OIDC_ISSUER = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
#: The default qualifier of ``cdk bootstrap``; the bootstrap roles carry it in their names.
CDK_QUALIFIER = "hnb659fds"


class GithubDeployRole(Construct):
    """The OIDC provider (created, or an existing one of the account) and the role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        repository: str,
        environments: Sequence[str],
        existing_provider_arn: str | None = None,
        cdk_qualifier: str = CDK_QUALIFIER,
    ) -> None:
        super().__init__(scope, construct_id)
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ValueError(f"repository must be <owner>/<name>, got {repository!r}")
        stack = Stack.of(self)
        # An account has at most one provider per issuer URL: reuse it where it exists.
        # The native AWS::IAM::OIDCProvider: no custom-resource Lambda; IAM verifies
        # GitHub's certificates itself, so no thumbprint is pinned.
        provider: iam.IOidcProvider = (
            iam.OidcProviderNative.from_oidc_provider_arn(self, "Provider", existing_provider_arn)
            if existing_provider_arn
            else iam.OidcProviderNative(
                self, "Provider", url=f"https://{GITHUB_OIDC_ISSUER}", client_ids=[STS_AUDIENCE]
            )
        )
        subjects = [f"repo:{repository}:environment:{env}" for env in environments]
        self.role = iam.Role(
            self,
            "Role",
            role_name="learnrec-github-deploy",
            description=f"GitHub Actions of {repository} deploying learnrec (OIDC)",
            max_session_duration=Duration.hours(2),
            assumed_by=iam.WebIdentityPrincipal(
                provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_ISSUER}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_ISSUER}:sub": subjects,
                    }
                },
            ),
        )
        account, region, partition = stack.account, stack.region, stack.partition
        bootstrap_roles = f"arn:{partition}:iam::{account}:role/cdk-{cdk_qualifier}-*"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DeployThroughCdkBootstrapRoles",
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[bootstrap_roles],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadStackOutputs",
                actions=["cloudformation:DescribeStacks"],
                resources=[f"arn:{partition}:cloudformation:{region}:{account}:stack/learnrec-*/*"],
            )
        )
        machines = f"arn:{partition}:states:{region}:{account}:stateMachine:learnrec-*-retrain"
        executions = f"arn:{partition}:states:{region}:{account}:execution:learnrec-*-retrain:*"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="SmokeCheckRetraining",
                actions=["states:StartExecution"],
                resources=[machines],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="SmokeCheckRetrainingStates",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[executions],
            )
        )
        acknowledge(
            self.role,
            "IAM5",
            "the CDK bootstrap roles (named cdk-<qualifier>-<kind>-<account>-<region>), the "
            "learnrec stacks of every stage, and their retraining executions",
            [
                f"Resource::arn:<AWS::Partition>:iam::{account}:role/cdk-{cdk_qualifier}-*",
                f"Resource::arn:<AWS::Partition>:cloudformation:{region}:{account}:"
                "stack/learnrec-*/*",
                f"Resource::arn:<AWS::Partition>:states:{region}:{account}:"
                "stateMachine:learnrec-*-retrain",
                f"Resource::arn:<AWS::Partition>:states:{region}:{account}:"
                "execution:learnrec-*-retrain:*",
            ],
        )


class LearnrecCicdStack(Stack):
    """``learnrec-cicd``: deployed once per account and region, before the stages."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        account: str,
        region: str,
        repository: str,
        environments: Sequence[str],
        existing_provider_arn: str | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=account, region=region),
            description="learnrec: the role GitHub Actions deploys with (OIDC)",
        )
        deploy = GithubDeployRole(
            self,
            "GithubDeploy",
            repository=repository,
            environments=environments,
            existing_provider_arn=existing_provider_arn,
        )
        CfnOutput(
            self,
            "DeployRoleArn",
            value=deploy.role.role_arn,
            description="set as DEPLOY_ROLE_ARN in each GitHub environment",
        )
