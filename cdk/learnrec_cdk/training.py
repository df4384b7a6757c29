"""The retrain path: EventBridge schedules -> Step Functions -> SageMaker jobs and the
pipeline Lambda, built from :data:`learnrec.pipeline.definition.PIPELINE`.

:func:`build_definition` is the one place that turns the pipeline's steps into states,
in their order, so the local runner and the state machine cannot disagree about what
runs when; the JSON each step receives follows the contract in the docstring of
:mod:`learnrec.pipeline.definition` (run document in ``$.run``, artifacts as
``pipeline/<run id>/<artifact>/`` prefixes, each step's answer in ``$.results.<step>``).

SageMaker steps are written as ``CustomState`` JSON rather than the
``SageMakerCreateTrainingJob`` construct: the contract merges a run's hyperparameter
overrides into the step's defaults at run time (``States.JsonMerge``), and that
construct only accepts a fixed mapping. The IAM the construct would add (job APIs,
``iam:PassRole`` to SageMaker only, the ``.sync`` EventBridge rules) is granted in
:class:`Pipeline`.

Both job kinds run in the AWS Deep Learning Container for TensorFlow training, with the
source uploaded as one ``sourcedir.tar.gz`` asset (``cdk/sagemaker/``): training jobs
get it as ``sagemaker_submit_directory`` the way SageMaker's framework containers
expect, processing jobs as an input they unpack in their entry point.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from learnrec.metric_names import NAMESPACE
from learnrec.pipeline.definition import (
    FRAMEWORK_HYPERPARAMETERS,
    PIPELINE,
    Mode,
    Step,
    StepKind,
    processing_arguments,
)
from learnrec.stages import EVENTS_PREFIX, MODELS_PREFIX, PIPELINE_PREFIX, StageConfig

from .functions import FunctionPlatform
from .nag import acknowledge, acknowledge_prefix_grant, arn_ref

# AWS Deep Learning Containers' registry account; a few opt-in regions use their own.
DLC_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "me-south-1": "217643126080",
    "me-central-1": "914824155844",
}
DLC_DEFAULT_ACCOUNT = "763104351884"
TRAINING_REPOSITORY = "tensorflow-training"
# The bootstrap at the root of the source archive (cdk/sagemaker/sagemaker_entry.py).
ENTRY_SCRIPT = "sagemaker_entry.py"
PROCESSING_CODE_DIR = "/opt/ml/processing/input/code"
# Unpack the source, then let the bootstrap install dependencies and run the step.
PROCESSING_ENTRYPOINT = [
    "bash",
    "-c",
    f"set -e; mkdir -p /opt/ml/code; tar -xzf {PROCESSING_CODE_DIR}/*.gz -C /opt/ml/code; "
    f'cd /opt/ml/code; exec python3 {ENTRY_SCRIPT} "$@"',
    "learnrec-step",
]
JOB_RETRY = {
    # Account limits and API throttling clear up; a failed job is not retried blindly.
    "ErrorEquals": ["SageMaker.AmazonSageMakerException", "ThrottlingException"],
    "IntervalSeconds": 60,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
}
TRAINING_STEPS = tuple(s.name for s in PIPELINE if s.kind is StepKind.TRAINING)


def training_image(region: str, tag: str) -> str:
    account = DLC_ACCOUNTS.get(region, DLC_DEFAULT_ACCOUNT)
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{TRAINING_REPOSITORY}:{tag}"


@dataclass(frozen=True)
class JobSettings:
    """What every SageMaker job of a run shares."""

    image: str
    instance_type: str
    role_arn: str
    bucket: str
    source_uri: str
    subnet_ids: Sequence[str]
    security_group_ids: Sequence[str]
    environment: Mapping[str, str]
    max_runtime: Duration
    volume_gb: int = 30


def _artifact_uri(bucket: str, artifact: str, path: str = "") -> dict[str, str]:
    """``S3Uri.$``: ``s3://<bucket>/pipeline/<run id>/<artifact>/[<path>/]``."""
    suffix = f"{path.strip('/')}/" if path else ""
    template = f"s3://{bucket}/{PIPELINE_PREFIX}{{}}/{artifact}/{suffix}"
    return {"S3Uri.$": f"States.Format('{template}', $.run.run_id)"}


def _job_name(step: Step) -> str:
    """:func:`learnrec.pipeline.definition.job_name`, evaluated by Step Functions."""
    return f"States.Format('learnrec-{{}}-{step.name.replace('_', '-')}', $.run.run_id)"


def _job_result(step: Step, kind: str) -> dict[str, Any]:
    """Keep a finished job's name and status in ``$.results.<step>``, nothing more.

    A ``.sync`` task answers with the whole Describe*Job output; left at the default
    ``ResultPath`` it would replace the state, run document included. (``ResultPath:
    null`` cannot be written here: a ``CustomState`` drops keys whose value is None.)
    """
    return {
        "ResultSelector": {"job.$": f"$.{kind}Name", "status.$": f"$.{kind}Status"},
        "ResultPath": f"$.results.{step.name}",
    }


def _network(jobs: JobSettings) -> dict[str, Any]:
    return {"SecurityGroupIds": list(jobs.security_group_ids), "Subnets": list(jobs.subnet_ids)}


def training_state(scope: Construct, step: Step, jobs: JobSettings) -> sfn.CustomState:
    """``createTrainingJob.sync``: channels, output path and merged hyperparameters."""
    channels = [
        {
            "ChannelName": channel.name,
            "DataSource": {
                "S3DataSource": {
                    **_artifact_uri(jobs.bucket, channel.artifact, channel.path),
                    "S3DataType": "S3Prefix",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
        for channel in step.channels
    ]
    output = _artifact_uri(jobs.bucket, step.outputs[0])
    parameters = {
        "TrainingJobName.$": _job_name(step),
        "RoleArn": jobs.role_arn,
        "AlgorithmSpecification": {"TrainingImage": jobs.image, "TrainingInputMode": "File"},
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath.$": output["S3Uri.$"]},
        "ResourceConfig": {
            "InstanceCount": 1,
            "InstanceType": jobs.instance_type,
            "VolumeSizeInGB": jobs.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": int(jobs.max_runtime.to_seconds())},
        # Defaults, then the run's overrides, then the run's fields (see hyperparameters_state).
        "HyperParameters.$": (
            f"States.JsonMerge(States.JsonMerge($.hyperparameters.{step.name}.defaults, "
            f"$.hyperparameters.{step.name}.overrides, false), "
            f"$.hyperparameters.{step.name}.fixed, false)"
        ),
        "Environment": dict(jobs.environment),
        "VpcConfig": _network(jobs),
    }
    return sfn.CustomState(
        scope,
        step.name,
        state_json={
            "Type": "Task",
            "Resource": (
                f"arn:{Stack.of(scope).partition}:states:::sagemaker:createTrainingJob.sync"
            ),
            "Parameters": parameters,
            **_job_result(step, "TrainingJob"),
            "Retry": [JOB_RETRY],
        },
    )


def hyperparameters_state(scope: Construct, step: Step, jobs: JobSettings) -> sfn.Pass:
    """The three layers of a training job's hyperparameters, merged by the job's state.

    ``fixed`` wins: SageMaker's framework keys (the source archive and the bootstrap
    that runs ``step.entry_point``) and the run's own fields, which must be the same in
    every step of a run.
    """
    fixed: dict[str, Any] = {
        "sagemaker_program": ENTRY_SCRIPT,
        "sagemaker_submit_directory": jobs.source_uri,
        "sagemaker_region": Stack.of(scope).region,
        "learnrec_entry_point": step.entry_point,
    }
    # The run request refuses overrides of these names (RunRequest.validate).
    assert tuple(fixed) == FRAMEWORK_HYPERPARAMETERS, fixed
    for name in step.run_hyperparameters:
        fixed[f"{name}.$"] = f"$.run.{name}"
    return sfn.Pass(
        scope,
        f"{step.name} hyperparameters",
        parameters={
            "defaults": dict(step.hyperparameters),
            "overrides": sfn.JsonPath.object_at(f"$.overrides.{step.name}"),
            "fixed": fixed,
        },
        result_path=f"$.hyperparameters.{step.name}",
    )


def processing_state(scope: Construct, step: Step, jobs: JobSettings) -> sfn.CustomState:
    """``createProcessingJob.sync`` running ``<entry_point> <step>``; the run document
    arrives as the ``run`` input (``pipeline/<run id>/run/run.json``, written by ``start``)."""
    inputs: list[dict[str, Any]] = [
        {
            "InputName": "code",
            "S3Input": {
                "S3Uri": jobs.source_uri,
                "LocalPath": PROCESSING_CODE_DIR,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }
    ]
    for artifact in step.artifact_inputs:
        inputs.append(
            {
                "InputName": artifact,
                "S3Input": {
                    **_artifact_uri(jobs.bucket, artifact),
                    "LocalPath": f"/opt/ml/processing/input/{artifact}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        )
    # Every output the step has in any mode: SageMaker uploads nothing from a folder the
    # step left empty, so the mode's own outputs (outputs_for) are what reaches S3.
    outputs = dict.fromkeys(o for mode in Mode for o in step.outputs_for(mode))
    parameters = {
        "ProcessingJobName.$": _job_name(step),
        "RoleArn": jobs.role_arn,
        "AppSpecification": {
            "ImageUri": jobs.image,
            "ContainerEntrypoint": PROCESSING_ENTRYPOINT,
            # Fixed per step; the run document is the job's "run" input.
            "ContainerArguments": processing_arguments(step),
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": name,
                    "S3Output": {
                        **_artifact_uri(jobs.bucket, name),
                        "LocalPath": f"/opt/ml/processing/output/{name}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for name in outputs
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": jobs.instance_type,
                "VolumeSizeInGB": jobs.volume_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": int(jobs.max_runtime.to_seconds())},
        "Environment": dict(jobs.environment),
        "NetworkConfig": {"VpcConfig": _network(jobs)},
    }
    return sfn.CustomState(
        scope,
        step.name,
        state_json={
            "Type": "Task",
            "Resource": (
                f"arn:{Stack.of(scope).partition}:states:::sagemaker:createProcessingJob.sync"
            ),
            "Parameters": parameters,
            **_job_result(step, "ProcessingJob"),
            "Retry": [JOB_RETRY],
        },
    )


def function_state(
    scope: Construct, name: str, function: lambda_.IFunction, payload: Mapping[str, Any]
) -> tasks.LambdaInvoke:
    return tasks.LambdaInvoke(
        scope,
        name,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(dict(payload)),
        payload_response_only=True,
        retry_on_service_exceptions=True,
        result_path=f"$.results.{name}",
    )


Connect = Callable[[sfn.IChainable], object]


def _escape(literal: str) -> str:
    """A string literal inside an intrinsic function: ``' { } \\`` escaped (ASL)."""
    for char in ("\\", "'", "{", "}"):
        literal = literal.replace(char, "\\" + char)
    return literal


def _step_states(
    scope: Construct, step: Step, jobs: JobSettings, function: lambda_.IFunction, failed: sfn.Fail
) -> tuple[sfn.State, Connect]:
    """A step's first state, and how to attach whatever comes after it."""
    if step.kind is StepKind.FUNCTION:
        invoke = function_state(
            scope, step.name, function, {"step": step.name, "run": sfn.JsonPath.object_at("$.run")}
        )
        invoke.add_catch(failed, result_path="$.failure")
        check = _check(scope, step.name, failed)
        invoke.next(check)
        return invoke, check.otherwise
    if step.kind is StepKind.TRAINING:
        hyper = hyperparameters_state(scope, step, jobs)
        job = training_state(scope, step, jobs)
        hyper.next(job)
        first: sfn.State = hyper
    else:
        job = processing_state(scope, step, jobs)
        first = job
    job.add_catch(failed, result_path="$.failure")
    return first, job.next


def build_definition(
    scope: Construct,
    *,
    jobs: JobSettings,
    function: lambda_.IFunction,
    request_defaults: Mapping[str, str],
) -> sfn.State:
    """The state machine: ``start``, then every step of ``PIPELINE`` in order.

    Steps that run only in some modes sit behind a Choice on ``$.run.mode`` whose other
    branch goes straight to the next step; a function step answering ``ok: false`` fails
    the execution with its answer as the cause; the execution ends by saying whether the
    candidate was promoted (the promote step applies the evaluation's gate).
    """
    failed = sfn.Fail(
        scope,
        "run failed",
        error="LearnrecRunFailed",
        cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.failure")),
    )
    # A schedule sends {"mode": ...}; stage and bucket are this deployment's unless the
    # execution's input says otherwise.
    start = function_state(
        scope,
        "start",
        function,
        {
            "step": "start",
            "request": sfn.JsonPath.json_merge(
                sfn.JsonPath.string_to_json(_escape(json.dumps(dict(request_defaults)))),
                sfn.JsonPath.object_at("$"),
            ),
        },
    )
    start.add_catch(failed, result_path="$.failure")
    started = _check(scope, "start", failed)
    # From here on the state is {"run", "overrides", "results"}: every training step has
    # an overrides entry, possibly empty, so the hyperparameter merge never misses a path.
    prepare = sfn.Pass(
        scope,
        "run started",
        parameters={
            "run": sfn.JsonPath.object_at("$.results.start.run"),
            "overrides": sfn.JsonPath.json_merge(
                sfn.JsonPath.string_to_json(
                    _escape(json.dumps({name: {} for name in TRAINING_STEPS}))
                ),
                sfn.JsonPath.object_at("$.results.start.run.hyperparameters"),
            ),
            "results": {},
        },
    )
    start.next(started)
    started.otherwise(prepare)
    connect: Connect = prepare.next
    skipped: list[sfn.Choice] = []  # mode choices whose other branch is the next step
    for step in PIPELINE:
        first, after = _step_states(scope, step, jobs, function, failed)
        entry: sfn.State = first
        if set(step.modes) != set(Mode):
            entry = sfn.Choice(scope, f"{step.name}?", comment=f"only in {sorted(step.modes)}")
            modes = [sfn.Condition.string_equals("$.run.mode", m.value) for m in step.modes]
            entry.when(modes[0] if len(modes) == 1 else sfn.Condition.or_(*modes), first)
        connect(entry)
        for choice in skipped:
            choice.otherwise(entry)
        skipped = [entry] if isinstance(entry, sfn.Choice) else []
        connect = after
    outcome = sfn.Choice(scope, "promoted?")
    outcome.when(
        sfn.Condition.boolean_equals("$.results.promote.promoted", True),
        sfn.Succeed(scope, "new model active"),
    )
    outcome.otherwise(sfn.Succeed(scope, "active model kept", comment="the gate said no"))
    connect(outcome)
    for choice in skipped:
        choice.otherwise(outcome)
    return start


def _check(scope: Construct, step: str, failed: sfn.Fail) -> sfn.Choice:
    """Fail the execution when a function step says it could not do its job."""
    choice = sfn.Choice(scope, f"{step} ok?")
    result = f"$.results.{step}"
    problem = (
        sfn.Condition.is_not_present(f"{result}.run")
        if step == "start"
        else sfn.Condition.boolean_equals(f"{result}.ok", False)
    )
    refused = sfn.Pass(scope, f"{step} refused", input_path=result, result_path="$.failure")
    choice.when(problem, refused.next(failed))
    return choice


class JobRole(Construct):
    """The SageMaker execution role of the pipeline's training and processing jobs.

    Also OpenSearch's master user (the index step creates indexes and maps roles), so it
    exists before the search domain; data grants are added by :class:`Pipeline`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, image_repository_arn: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="learnrec pipeline jobs (SageMaker training and processing)",
        )
        job_arn = (
            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{job_arn}TrainingJobs:*", f"{job_arn}ProcessingJobs:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                resources=[image_repository_arn],
            )
        )
        # Jobs in a VPC: SageMaker manages their network interfaces with this role; the
        # EC2 describe/ENI calls and ECR's token call accept only Resource "*".
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:GetAuthorizationToken",
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )
        # SageMaker manages a VPC job's network interfaces with this role; those EC2
        # calls and ECR's login accept only "*". Job log streams are named per job.
        acknowledge(
            self.role,
            "IAM5",
            "VPC ENI management and ECR login accept only Resource '*'; log streams per job",
            [
                "Resource::*",
                f"Resource::{job_arn.replace(f'arn:{stack.partition}', 'arn:<AWS::Partition>')}"
                "TrainingJobs:*",
                f"Resource::{job_arn.replace(f'arn:{stack.partition}', 'arn:<AWS::Partition>')}"
                "ProcessingJobs:*",
            ],
        )


class Pipeline(Construct):
    """The pipeline Lambda, the state machine and the schedules that start it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        config: StageConfig,
        job_role: iam.IRole,
        job_image: str,
        job_environment: Mapping[str, str],
        source_archive: str,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        names = config.names
        function_name, state_machine_name = names.pipeline_function, names.state_machine
        model_package_group = names.model_package_group
        # What every run is started with unless its request says otherwise.
        request_defaults = {"stage": config.stage, "bucket": names.data_bucket}
        pipeline = platform.function(
            self,
            "Pipeline",
            package="pipeline",
            function_name=function_name,
            description="learnrec retraining: start a run, register and promote bundles",
            memory_mb=512,
            timeout=Duration.minutes(5),
            environment=platform.environment("pipeline"),
        )
        self.function = pipeline.function
        self.role = pipeline.role
        # start: read the active pointer, write the run document (pipeline/<run>/run/);
        # register: read the run's artifacts, copy the candidate bundle to
        # models/versions/<v>/, write version/; promote: move the pointer, write active/.
        bucket.grant_read(self.role, f"{PIPELINE_PREFIX}*")
        bucket.grant_put(self.role, f"{PIPELINE_PREFIX}*")
        bucket.grant_read_write(self.role, f"{MODELS_PREFIX}*")
        acknowledge_prefix_grant(
            self.role, bucket, "read_write", [f"{PIPELINE_PREFIX}*", f"{MODELS_PREFIX}*"]
        )
        # The stage's model registry, made here rather than at run time: register only
        # adds packages to it (CreateModelPackage), promote records the verdict on them
        # (UpdateModelPackage).
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=model_package_group,
            model_package_group_description="learnrec model bundles, one package per run",
        )
        self.model_package_group.apply_removal_policy(platform.removal_policy)
        registry = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage"],
                resources=[
                    self.model_package_group.attr_model_package_group_arn,
                    f"{registry}:model-package/{model_package_group}/*",
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:UpdateModelPackage"],
                resources=[f"{registry}:model-package/{model_package_group}/*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
            )
        )

        source = s3_assets.Asset(self, "JobSource", path=source_archive)
        source.grant_read(job_role)
        bucket.grant_read(job_role, f"{EVENTS_PREFIX}*")
        bucket.grant_read(job_role, f"{MODELS_PREFIX}*")
        bucket.grant_read_write(job_role, f"{PIPELINE_PREFIX}*")
        acknowledge_prefix_grant(
            job_role,
            bucket,
            "read_write",
            [f"{EVENTS_PREFIX}*", f"{MODELS_PREFIX}*", f"{PIPELINE_PREFIX}*"],
        )
        # CDK's asset bucket holds the job source; CDK grants reads on its keys.
        assets_bucket = stack.resolve(source.s3_bucket_name)
        acknowledge(
            job_role,
            "IAM5",
            "the jobs read their source archive from CDK's asset bucket",
            [f"Resource::arn:<AWS::Partition>:s3:::{assets_bucket}/*"],
        )
        jobs = JobSettings(
            image=job_image,
            instance_type=config.training_instance_type,
            role_arn=job_role.role_arn,
            bucket=bucket.bucket_name,
            source_uri=source.s3_object_url,
            subnet_ids=platform.vpc.select_subnets(subnet_group_name="app").subnet_ids,
            security_group_ids=[platform.security_group.security_group_id],
            environment=job_environment,
            max_runtime=Duration.hours(3),
        )
        self.job_settings = jobs

        run_logs = logs.LogGroup(
            self,
            "RunLogs",
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=platform.log_retention,
            removal_policy=platform.removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(
                build_definition(
                    self, jobs=jobs, function=self.function, request_defaults=request_defaults
                )
            ),
            timeout=Duration.hours(12),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=run_logs, level=sfn.LogLevel.ALL),
        )
        self._grant_jobs(job_role)
        prefix = f"arn:<AWS::Partition>:sagemaker:{stack.region}:{stack.account}"
        # The pipeline names every job learnrec-<run id>-<step> and every model package
        # lands in the stage's group; X-Ray and log delivery (state machine) and
        # PutMetricData (pipeline function, learnrec namespace only) accept only "*";
        # invoking the function may target its versions (<arn>:*).
        acknowledge(
            self.state_machine,
            "IAM5",
            "jobs are named learnrec-<run id>-<step>; X-Ray and log delivery need '*'",
            [
                "Resource::*",
                f"Resource::{prefix}:training-job/learnrec-*",
                f"Resource::{prefix}:processing-job/learnrec-*",
                f"Resource::{arn_ref(self.function)}:*",
            ],
        )
        acknowledge(
            self.role,
            "IAM5",
            "model packages of the stage's group; PutMetricData limited by namespace",
            ["Resource::*", f"Resource::{prefix}:model-package/{model_package_group}/*"],
        )
        self.schedules = [
            events.Rule(
                self,
                f"{mode.value.capitalize()}Schedule",
                description=f"learnrec {mode.value} retrain",
                schedule=events.Schedule.expression(expression),
                enabled=config.schedules_enabled,
                targets=[
                    targets.SfnStateMachine(
                        self.state_machine,
                        input=events.RuleTargetInput.from_object({"mode": mode.value}),
                        retry_attempts=2,
                    )
                ],
            )
            for mode, expression in (
                (Mode.FULL, config.schedules.full_retrain),
                (Mode.RANKING, config.schedules.ranking_retrain),
            )
        ]

    def _grant_jobs(self, job_role: iam.IRole) -> None:
        """What the ``.sync`` SageMaker integrations need, for learnrec's jobs only."""
        stack = Stack.of(self)
        prefix = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        rules = f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule"
        statements = [
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:ListTags",
                ],
                resources=[
                    f"{prefix}:training-job/learnrec-*",
                    f"{prefix}:processing-job/learnrec-*",
                ],
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[job_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"{rules}/StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                    f"{rules}/StepFunctionsGetEventsForSageMakerProcessingJobsRule",
                ],
            ),
        ]
        for statement in statements:
            self.state_machine.add_to_role_policy(statement)
