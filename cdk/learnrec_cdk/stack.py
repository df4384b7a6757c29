"""One stage of learnrec as one stack: the constructs wired together with grants.

:class:`LearnrecStack` is what ``cdk/app.py`` (``build_app``) builds and what the tests
build in-process: a :class:`~learnrec.stages.StageConfig` and the built assets in, a
stack out. Nothing here reads the environment or the CDK context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, Environment, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from learnrec.function_env import Value, function_environment
from learnrec.privacy.maintenance import SCHEDULE_HOURS
from learnrec.serving.model_store import POINTER_FILE
from learnrec.serving.openapi_doc import Route
from learnrec.stages import MODELS_PREFIX, StageConfig
from learnrec.storage.migrate import scripts_digest
from learnrec.storage.schema import HEAD as SCHEMA_HEAD
from learnrec_dev.packaging import STAMP_FILE

from .assets import LambdaAssets
from .data import Data
from .functions import FunctionPlatform, layer_versions
from .ingest import Ingest
from .maintenance import Maintenance
from .migrations import SchemaMigration
from .nag import acknowledge_prefix_grant
from .network import Network
from .observability import Observability
from .proxy import CatalogProxy
from .search import Search
from .search_security import SearchSecurity
from .serving import Serving
from .training import DLC_ACCOUNTS, DLC_DEFAULT_ACCOUNT, TRAINING_REPOSITORY, JobRole, Pipeline

# Feature flags, passed to App() by cdk/app.py and by the tests alike (not in cdk.json,
# which only the CLI reads), so both synthesize the same templates.
FEATURE_FLAGS = {
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:validateSnapshotRemovalPolicy": True,
    # A function version's hash includes its layers' content, so a release that changes
    # only a layer still publishes a new version, and CodeDeploy moves `live` onto it.
    "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
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
        self._config = config
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
            stream_retention_hours=config.stream_retention_hours,
            kinesis_shards=config.kinesis_shards,
            aurora_min_acu=config.aurora_min_acu,
            aurora_max_acu=config.aurora_max_acu,
            vpc=vpc,
            app_security_group=app_sg,
            removal_policy=removal,
            backup_days=30 if keep else 7,
        )
        proxy = CatalogProxy(
            self,
            "CatalogProxy",
            name=names.database_proxy,
            cluster=data.database,
            secret=data.database_secret,
            vpc=vpc,
            app_security_group=app_sg,
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
            log_retention=retention,
            removal_policy=removal,
        )

        layers = layer_versions(
            self,
            {name: str(path) for name, path in inputs.assets.layers.items()},
            removal,
            exclude=[STAMP_FILE],
        )
        # Every setting a function of this stage may read (learnrec.function_env picks
        # each function's share and names the variables as learnrec.config reads them).
        settings: dict[str, Value] = {
            "s3_bucket": names.data_bucket,
            "model_store": names.model_store_url,
            "database_secret_arn": data.database_secret.secret_arn,
            # Through RDS Proxy (TLS), not the cluster endpoint the secret names.
            "database_host": proxy.endpoint,
            "user_id_hash_secret_id": data.user_id_hash_secret.secret_arn,
            # Events older than the archive keeps them are refused at the edges.
            "event_retention_days": config.event_retention_days,
            "events_stream": names.events_stream,
            "dead_letter_queue_url": data.dead_letter_queue.queue_url,
            "vector_index": "opensearch",
            "opensearch_endpoint": search.endpoint,
            "opensearch_alias": names.opensearch_alias,
            "jwt_secret_id": data.jwt_secret.secret_arn,
            "jwt_issuer": config.token_issuer,
            "jwt_audience": config.token_audience,
        }
        platform = FunctionPlatform(
            assets=inputs.assets.functions,
            layers=layers,
            settings=settings,
            vpc=vpc,
            security_group=app_sg,
            log_retention=retention,
            removal_policy=removal,
        )
        serving = Serving(
            self,
            "Serving",
            platform=platform,
            config=config,
            routes=inputs.routes,
        )
        ingest = Ingest(
            self,
            "Ingest",
            platform=platform,
            config=config,
            stream=data.stream,
            dead_letter_queue=data.dead_letter_queue,
            bucket=data.bucket,
        )
        pipeline = Pipeline(
            self,
            "Retrain",
            platform=platform,
            config=config,
            job_role=jobs.role,
            job_image=inputs.training_image,
            job_environment={**function_environment("job", settings), "AWS_REGION": region},
            source_archive=str(inputs.job_source_archive),
            bucket=data.bucket,
        )
        maintenance = Maintenance(
            self,
            "Maintenance",
            platform=platform,
            function_name=names.maintenance_function,
            schedule_hours=SCHEDULE_HOURS,
            bucket=data.bucket,
            dead_letter_queue=data.dead_letter_queue,
        )

        # The schema reaches head before any function that uses it is updated.
        migrations = SchemaMigration(
            self,
            "Migrations",
            platform=platform,
            function_name=names.migrate_function,
            database=data.database,
            database_secret=data.database_secret,
            migrations_digest=scripts_digest(),
            head_revision=SCHEMA_HEAD,
        )
        migrations.run_before(
            serving.function, ingest.function, pipeline.function, maintenance.function
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
        # Promote and rollback (API admin routes, pipeline) move the alias with the pointer.
        search.grant_alias_swap(api_role)
        search.grant_alias_swap(pipeline.role)
        # What each role may do inside the domain (FGAC), mapped by the stack itself.
        SearchSecurity(
            self,
            "SearchSecurity",
            search=search,
            platform=platform,
            function_name=names.search_security_function,
            search_roles=[api_role],
            indexer_roles=[jobs.role, pipeline.role],
        )
        for role in (api_role, ingest_role, pipeline.role, jobs.role, maintenance.role):
            data.database_secret.grant_read(role)
            data.user_id_hash_secret.grant_read(role)
        data.jwt_secret.grant_read(api_role)

        observability = Observability(
            self,
            "Observability",
            dashboard_name=f"learnrec-{config.stage}",
            stage=config.stage,
            thresholds=config.alarms,
            api_name=names.api_function,
            api_stage_name=config.stage,
            api_function=serving.function,
            api_version=serving.version,
            throttled_requests=serving.throttled_requests,
            ingest_function=ingest.function,
            pipeline_function=pipeline.function,
            maintenance_function=maintenance.function,
            maintenance_hours=SCHEDULE_HOURS,
            dead_letter_queue=data.dead_letter_queue,
            state_machine=pipeline.state_machine,
            search_domain=search.domain,
            search_replicas=config.opensearch_instances > 1,
            database=data.database,
        )
        # A canary that slows the API down, or whose own responses are 5xx or fallbacks
        # more often than the stage allows, is rolled back.
        serving.roll_back_on(*observability.canary_alarms)

        self.serving, self.ingest, self.pipeline = serving, ingest, pipeline
        self.data, self.search, self.observability = data, search, observability
        self.migrations, self.maintenance = migrations, maintenance
        for name, value, description in (
            ("ApiUrl", serving.url, "base URL of the recommendations API"),
            ("DataBucket", bucket.bucket_name, "events/, models/ and pipeline/ prefixes"),
            ("EventStream", data.stream.stream_name, "Kinesis stream for learning events"),
            ("DeadLetterQueueUrl", data.dead_letter_queue.queue_url, "unprocessable events"),
            ("StateMachineArn", pipeline.state_machine.state_machine_arn, "retraining"),
            ("OpenSearchEndpoint", search.endpoint, "k-NN item index (inside the VPC)"),
            ("SearchAdminRoleArn", search.admin_role.role_arn, "OpenSearch master user"),
            ("DatabaseSecretArn", data.database_secret.secret_arn, "Aurora credentials"),
            ("JwtSecretArn", data.jwt_secret.secret_arn, "put the JWKS here"),
            ("AlarmTopicArn", observability.topic.topic_arn, "subscribe on-call here"),
            ("Dashboard", f"learnrec-{config.stage}", "CloudWatch dashboard name"),
        ):
            CfnOutput(self, name, value=value, description=description)

    @property
    def availability_zones(self) -> list[str]:
        """The stage's two zones: named in its config, else the region's first two.

        Without names they are ``Fn::GetAZs`` picks that CloudFormation resolves at deploy
        time, so synth needs no AWS lookup and no zone name is guessed (zone names are
        mapped per account, and not every account can use every zone). Computed once:
        the subnets and the single-zone search selection must see the same strings.
        """
        zones: list[str] | None = getattr(self, "_zones", None)
        if zones is None:
            configured = self._config.availability_zones
            zones = (
                list(configured)
                if configured
                else [Fn.select(index, Fn.get_azs()) for index in range(2)]
            )
            self._zones = zones
        return zones
