"""One stage of learnrec as one stack: the constructs wired together with grants.

:func:`build_stack` is what ``cdk/app.py`` calls and what the tests call in-process: a
:class:`~learnrec.stages.StageConfig` and the built assets in, a stack out. Nothing
here reads the environment or the CDK context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from learnrec.packaging import STAMP_FILE
from learnrec.serving.model_store import POINTER_FILE
from learnrec.serving.openapi_doc import Route
from learnrec.stages import MODELS_PREFIX, StageConfig

from .assets import LambdaAssets
from .data import Data
from .functions import layer_versions
from .ingest import Ingest
from .nag import acknowledge_prefix_grant
from .network import Network
from .observability import Observability, Thresholds
from .search import Search
from .serving import Serving
from .training import DLC_ACCOUNTS, DLC_DEFAULT_ACCOUNT, TRAINING_REPOSITORY, JobRole, Pipeline

POWERTOOLS_NAMESPACE = "learnrec"
# Feature flags, passed to App() by cdk/app.py and by the tests alike (not in cdk.json,
# which only the CLI reads), so both synthesize the same templates.
FEATURE_FLAGS = {
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:validateSnapshotRemovalPolicy": True,
}


@dataclass(frozen=True)
class StackInputs:
    """Everything a stage's stack is built from besides its :class:`StageConfig`."""

    assets: LambdaAssets
    job_source_archive: Path
    training_image: str
    routes: Sequence[Route]


class LearnrecStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, inputs: StackInputs
    ) -> None:
        names = config.names
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=names.account, region=names.region),
            description=f"learnrec {config.stage}: recommendations for learning platforms",
            termination_protection=config.stage == "prod",
        )
        Tags.of(self).add("project", "learnrec")
        Tags.of(self).add("stage", config.stage)
        keep = config.stage == "prod"
        removal = RemovalPolicy.RETAIN if keep else RemovalPolicy.DESTROY
        retention = logs.RetentionDays.THREE_MONTHS if keep else logs.RetentionDays.ONE_MONTH

        network = Network(
            self,
            "Network",
            cidr="10.40.0.0/16",
            nat_gateways=2 if keep else 1,
            log_retention=retention,
            removal_policy=removal,
        )
        vpc, app_sg = network.vpc, network.app_security_group
        data = Data(
            self,
            "Data",
            names=names,
            event_retention_days=config.event_retention_days,
            kinesis_shards=config.kinesis_shards,
            aurora_min_acu=config.aurora_min_acu,
            aurora_max_acu=config.aurora_max_acu,
            vpc=vpc,
            app_security_group=app_sg,
            removal_policy=removal,
            backup_days=30 if keep else 7,
        )
        region = names.region
        image_account = DLC_ACCOUNTS.get(region, DLC_DEFAULT_ACCOUNT)
        jobs = JobRole(
            self,
            "Jobs",
            image_repository_arn=(
                f"arn:{self.partition}:ecr:{region}:{image_account}:repository/"
                f"{TRAINING_REPOSITORY}"
            ),
        )
        search = Search(
            self,
            "Search",
            alias=names.opensearch_alias,
            instance_type=config.opensearch_instance_type,
            instances=config.opensearch_instances,
            volume_gb=20,
            vpc=vpc,
            app_security_group=app_sg,
            admin_role=jobs.role,
            log_retention=retention,
            removal_policy=removal,
        )

        layers = layer_versions(
            self,
            {name: str(path) for name, path in inputs.assets.layers.items()},
            removal,
            exclude=[STAMP_FILE],
        )
        functions = inputs.assets.functions
        common = {
            "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_NAMESPACE,
            "S3_BUCKET": names.data_bucket,
            "MODEL_STORE": names.model_store_url,
            "DATABASE_SECRET_ARN": data.database_secret.secret_arn,
            "USER_ID_HASH_SECRET_ID": data.user_id_hash_secret.secret_arn,
        }
        serving = Serving(
            self,
            "Serving",
            asset=functions["api"],
            layers=[layers[name] for name in functions["api"].layers],
            function_name=names.api_function,
            stage_name=config.stage,
            memory_mb=config.api_memory_mb,
            environment={
                **common,
                "POWERTOOLS_SERVICE_NAME": "api",
                "KINESIS_STREAM_NAME": names.events_stream,
                "VECTOR_INDEX": "opensearch",
                "OPENSEARCH_ENDPOINT": search.endpoint,
                "OPENSEARCH_ALIAS": names.opensearch_alias,
                "JWT_SECRET_ID": data.jwt_secret.secret_arn,
            },
            routes=inputs.routes,
            throttle_rate=config.api_throttle_rate,
            throttle_burst=config.api_throttle_burst,
            canary_percent=config.canary_percent,
            canary_minutes=config.canary_minutes,
            provisioned_concurrency=config.provisioned_concurrency,
            vpc=vpc,
            security_group=app_sg,
            log_retention=retention,
            removal_policy=removal,
        )
        ingest = Ingest(
            self,
            "Ingest",
            asset=functions["ingest"],
            layers=[layers[name] for name in functions["ingest"].layers],
            function_name=names.ingest_function,
            memory_mb=config.ingest_memory_mb,
            batch_size=config.ingest_batch_size,
            environment={
                **common,
                "POWERTOOLS_SERVICE_NAME": "ingest",
                "DEAD_LETTER_QUEUE_URL": data.dead_letter_queue.queue_url,
            },
            stream=data.stream,
            dead_letter_queue=data.dead_letter_queue,
            bucket=data.bucket,
            vpc=vpc,
            security_group=app_sg,
            log_retention=retention,
            removal_policy=removal,
        )
        pipeline = Pipeline(
            self,
            "Retrain",
            asset=functions["pipeline"],
            layers=[layers[name] for name in functions["pipeline"].layers],
            function_name=names.pipeline_function,
            state_machine_name=names.state_machine,
            environment={**common, "POWERTOOLS_SERVICE_NAME": "pipeline"},
            job_role=jobs.role,
            job_image=inputs.training_image,
            job_instance_type=config.training_instance_type,
            job_environment={
                "S3_BUCKET": names.data_bucket,
                "MODEL_STORE": names.model_store_url,
                "DATABASE_SECRET_ARN": data.database_secret.secret_arn,
                "USER_ID_HASH_SECRET_ID": data.user_id_hash_secret.secret_arn,
                "OPENSEARCH_ENDPOINT": search.endpoint,
                "OPENSEARCH_ALIAS": names.opensearch_alias,
                "AWS_REGION": region,
            },
            source_archive=str(inputs.job_source_archive),
            bucket=data.bucket,
            request_defaults={"stage": config.stage, "bucket": names.data_bucket},
            model_package_group=names.model_package_group,
            full_schedule=config.schedules.full_retrain,
            ranking_schedule=config.schedules.ranking_retrain,
            schedules_enabled=config.schedules_enabled,
            vpc=vpc,
            security_group=app_sg,
            log_retention=retention,
            removal_policy=removal,
        )

        # Grants: each role gets what its path needs, nothing more (tests/cdk asserts it).
        bucket = data.bucket
        api_role, ingest_role = serving.role, ingest.role
        bucket.grant_read(api_role, f"{MODELS_PREFIX}*")
        # Promote and rollback from /admin/models move only the active-version pointer.
        bucket.grant_put(api_role, f"{MODELS_PREFIX}{POINTER_FILE}")
        acknowledge_prefix_grant(api_role, bucket, "read", [f"{MODELS_PREFIX}*"])
        acknowledge_prefix_grant(api_role, bucket, "put", [])
        data.stream.grant_write(api_role)
        search.grant_query(api_role)
        search.grant_admin(jobs.role)
        # promote points the serving alias at the new version's index (read the alias's
        # holders, then one _aliases update): those two requests and nothing else.
        domain = search.domain.domain_arn
        for action, path in (
            ("es:ESHttpGet", f"_alias/{names.opensearch_alias}"),
            ("es:ESHttpPost", "_aliases"),
        ):
            pipeline.role.add_to_principal_policy(
                iam.PolicyStatement(actions=[action], resources=[f"{domain}/{path}"])
            )
        for role in (api_role, ingest_role, pipeline.role, jobs.role):
            data.database_secret.grant_read(role)
            data.user_id_hash_secret.grant_read(role)
        data.jwt_secret.grant_read(api_role)

        observability = Observability(
            self,
            "Observability",
            dashboard_name=f"learnrec-{config.stage}",
            stage=config.stage,
            thresholds=Thresholds(
                p95_latency_ms=config.alarms.p95_latency_ms,
                p95_latency_minutes=config.alarms.p95_latency_minutes,
                error_rate_percent=config.alarms.error_rate_percent,
                error_rate_minutes=config.alarms.error_rate_minutes,
                drift_score=config.alarms.drift_score,
                iterator_age_ms=config.alarms.iterator_age_ms,
                dead_letter_messages=config.alarms.dead_letter_messages,
            ),
            api_name=names.api_function,
            api_stage_name=config.stage,
            api_function=serving.function,
            ingest_function=ingest.function,
            dead_letter_queue=data.dead_letter_queue,
            state_machine=pipeline.state_machine,
        )
        # A canary that slows the API down or raises its error rate is rolled back.
        serving.deployment_group.add_alarm(observability.latency_alarm)
        serving.deployment_group.add_alarm(observability.error_rate_alarm)

        self.serving, self.ingest, self.pipeline = serving, ingest, pipeline
        self.data, self.search, self.observability = data, search, observability
        for name, value, description in (
            ("ApiUrl", serving.url, "base URL of the recommendations API"),
            ("DataBucket", bucket.bucket_name, "events/, models/ and pipeline/ prefixes"),
            ("EventStream", data.stream.stream_name, "Kinesis stream for learning events"),
            ("DeadLetterQueueUrl", data.dead_letter_queue.queue_url, "unprocessable events"),
            ("StateMachineArn", pipeline.state_machine.state_machine_arn, "retraining"),
            ("OpenSearchEndpoint", search.endpoint, "k-NN item index (inside the VPC)"),
            ("DatabaseSecretArn", data.database_secret.secret_arn, "Aurora credentials"),
            ("JwtSecretArn", data.jwt_secret.secret_arn, "put the JWKS here"),
            ("AlarmTopicArn", observability.topic.topic_arn, "subscribe on-call here"),
            ("Dashboard", f"learnrec-{config.stage}", "CloudWatch dashboard name"),
        ):
            CfnOutput(self, name, value=value, description=description)

    @property
    def availability_zones(self) -> list[str]:
        """Two zones named after the region, so synth never looks them up in AWS.

        An account may map zone names differently, but every region has ``a`` and
        ``b``; override with explicit zones here if a stage must avoid one.
        """
        return [f"{self.region}a", f"{self.region}b"]
