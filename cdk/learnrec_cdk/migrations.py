"""The deploy-time schema migration: a Lambda function in the VPC, run as a custom resource.

CloudFormation runs it after Aurora exists and before the functions that use the
tables are updated (they depend on it), so new code never meets an old schema; if the
migration fails, the deployment fails and rolls back before any function changed. It
runs again exactly when the migration scripts change: their digest is a property of
the resource. Delete leaves the schema and its data alone (learnrec.storage.migrate).

The function is an ordinary learnrec function (own role and log group, app subnets,
the application security group that Aurora admits) with read access to the database
secret; the CDK provider framework invokes it and answers CloudFormation.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from .functions import FunctionPlatform
from .nag import acknowledge, arn_ref

RESOURCE_TYPE = "Custom::LearnrecSchema"
# Long enough for a migration that rewrites a big table; the provider framework invokes
# the function synchronously and its own function may run 15 minutes.
MIGRATION_TIMEOUT = Duration.minutes(10)


class SchemaMigration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        function_name: str,
        database: IConstruct,
        database_secret: secretsmanager.ISecret,
        migrations_digest: str,
        head_revision: str,
    ) -> None:
        super().__init__(scope, construct_id)
        migrate = platform.function(
            self,
            "Migrate",
            package="migrate",
            function_name=function_name,
            description="learnrec schema migration (Alembic) to head, run on each deployment",
            memory_mb=512,
            timeout=MIGRATION_TIMEOUT,
            environment=platform.environment("migrate"),
        )
        self.function, self.role = migrate.function, migrate.role
        database_secret.grant_read(self.role)

        # The framework's own function only invokes ours and answers CloudFormation's
        # presigned URL, so it stays outside the VPC, with a role of our making (CDK's
        # default attaches AWS-managed policies) that may write only its log group.
        provider_logs = logs.LogGroup(
            self,
            "ProviderLogs",
            log_group_name=f"/aws/lambda/{function_name}-provider",
            retention=platform.log_retention,
            removal_policy=platform.removal_policy,
        )
        provider_role = iam.Role(
            self,
            "ProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}-provider: invokes the migration, writes its logs",
        )
        provider_logs.grant_write(provider_role)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.function,
            provider_function_name=f"{function_name}-provider",
            log_group=provider_logs,
            framework_on_event_role=provider_role,
        )
        # The framework may invoke any version of the migration function (CDK grants
        # "<arn>:*"); it runs a runtime CDK picks and keeps current.
        acknowledge(
            provider_role,
            "IAM5",
            "the CDK provider framework invokes the migration function's versions",
            [f"Resource::{arn_ref(self.function)}:*"],
        )
        acknowledge(provider, "L1", "the provider framework's runtime is chosen by the CDK")

        self.resource = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={"MigrationsDigest": migrations_digest, "Revision": head_revision},
        )
        # Aurora (cluster and instances) first: the migration connects to it.
        self.resource.node.add_dependency(database)
        self.revision = self.resource.get_att_string("Revision")

    def run_before(self, *constructs: IConstruct) -> None:
        """Make CloudFormation migrate before creating or updating these."""
        for construct in constructs:
            construct.node.add_dependency(self.resource)
