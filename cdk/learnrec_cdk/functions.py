"""One way to define a learnrec Lambda function: python3.12 on x86_64 (the platform the
layers are built for), in the VPC, traced, with its own log group and its own role.

The role is explicit rather than CDK's default, which attaches the AWS-managed
``AWSLambdaBasicExecutionRole``/``AWSLambdaVPCAccessExecutionRole`` (logs on every log
group in the account): here the function may write only to its log group, and each
construct grants it exactly the data access it needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from learnrec.function_env import FunctionName, Value, function_environment

from .assets import FunctionAsset
from .nag import acknowledge
from .network import APP_SUBNETS

RUNTIME = lambda_.Runtime.PYTHON_3_12
# Lambda creates and removes the function's network interfaces with the function's own
# role; these EC2 calls do not support resource-level permissions (AWS requires "*").
ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


class LearnrecFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asset: FunctionAsset,
        layers: Sequence[lambda_.ILayerVersion],
        function_name: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        environment: Mapping[str, str],
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        ephemeral_storage_mb: int = 512,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: its log group, ENIs, traces, and what it is granted",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(iam.PolicyStatement(actions=ENI_ACTIONS, resources=["*"]))
        # ENI management (functions in the VPC) and X-Ray trace upload (active tracing)
        # accept only Resource "*"; the test suite allow-lists exactly these actions.
        acknowledge(
            self.role,
            "IAM5",
            "ENI management and X-Ray trace upload accept only Resource '*'",
            ["Resource::*"],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=asset.handler,
            code=lambda_.Code.from_asset(str(asset.code)),
            layers=list(layers),
            memory_size=memory_mb,
            timeout=timeout,
            ephemeral_storage_size=Size.mebibytes(ephemeral_storage_mb),
            environment=dict(environment),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=APP_SUBNETS,
            security_groups=[security_group],
        )
        # The layers hold wheels built for CPython 3.12 (learnrec_dev.packaging); a newer
        # runtime needs the layers rebuilt and tested first.
        acknowledge(self.function, "L1", "the layers are built for python3.12")


@dataclass(frozen=True)
class FunctionPlatform:
    """What every function of a stage shares, given to each construct that defines one.

    The built packages and their layers, the settings the functions' environments are
    built from (:func:`learnrec.function_env.function_environment`, with CloudFormation
    tokens as values), the network they run in, and the stage's log and removal
    policies. A construct says only what is its own: name, memory, timeout, environment.
    """

    assets: Mapping[str, FunctionAsset]
    layers: Mapping[str, lambda_.ILayerVersion]
    settings: Mapping[str, Value]
    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy

    def environment(self, function: FunctionName) -> dict[str, str]:
        """The variables ``function`` reads, from the stage's settings."""
        return function_environment(function, self.settings)

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: str,
        function_name: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        environment: Mapping[str, str],
        ephemeral_storage_mb: int = 512,
    ) -> LearnrecFunction:
        """A :class:`LearnrecFunction` from the built package ``package``, with its layers."""
        asset = self.assets[package]
        return LearnrecFunction(
            scope,
            construct_id,
            asset=asset,
            layers=[self.layers[name] for name in asset.layers],
            function_name=function_name,
            description=description,
            memory_mb=memory_mb,
            timeout=timeout,
            environment=environment,
            vpc=self.vpc,
            security_group=self.security_group,
            log_retention=self.log_retention,
            removal_policy=self.removal_policy,
            ephemeral_storage_mb=ephemeral_storage_mb,
        )


def layer_versions(
    scope: Construct,
    layers: Mapping[str, str],
    removal_policy: RemovalPolicy,
    exclude: Sequence[str] = (),
) -> dict[str, lambda_.ILayerVersion]:
    """One ``LayerVersion`` per built layer folder, shared by the functions using it."""
    return {
        name: lambda_.LayerVersion(
            scope,
            f"Layer{name.capitalize()}",
            code=lambda_.Code.from_asset(path, exclude=list(exclude)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description=f"learnrec {name} dependencies (learnrec_dev.packaging)",
            removal_policy=removal_policy,
        )
        for name, path in layers.items()
    }
