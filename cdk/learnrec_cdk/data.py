"""Where learnrec keeps things: the data bucket, the event stream and its dead-letter
queue, the Aurora PostgreSQL catalog and the secrets.

One bucket with a prefix per kind of object (:mod:`learnrec.stages`): raw events expire
after the retention period, model bundles are versioned so a deleted or overwritten
bundle can be recovered, pipeline working data is short-lived. Everything is encrypted
and reachable only over TLS; nothing is public.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from learnrec.events.dead_letter import DEAD_LETTER_PREFIX
from learnrec.stages import EVENTS_PREFIX, MODELS_PREFIX, PIPELINE_PREFIX, ResourceNames

from .nag import acknowledge
from .network import DATA_SUBNETS

# Dead letters are kept only as long as someone needs them to investigate and replay:
# the queue keeps its messages a week, the spilled payloads a week longer.
DEAD_LETTER_QUEUE_RETENTION_DAYS = 7
DEAD_LETTER_RETENTION_DAYS = 14
# A run's working data is read by the next steps of the same run, never later.
PIPELINE_RETENTION_DAYS = 30
# Superseded model bundle objects stay recoverable this long after an overwrite.
MODEL_NONCURRENT_DAYS = 365
# The JWT secret holds public keys only (learnrec.serving.auth reads "jwks" or
# "public_key_pem"); operators replace this empty key set with the real one.
EMPTY_JWKS = '{"jwks": {"keys": []}}'


class Data(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        event_retention_days: int,
        stream_retention_hours: int,
        kinesis_shards: int,
        aurora_min_acu: float,
        aurora_max_acu: float,
        vpc: ec2.IVpc,
        app_security_group: ec2.ISecurityGroup,
        removal_policy: RemovalPolicy,
        backup_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        destroy = removal_policy == RemovalPolicy.DESTROY

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(event_retention_days))],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )
        # The access-log bucket cannot log to itself; its own reads are in CloudTrail.
        acknowledge(self.access_logs, "S1", "this is the access-log bucket")

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=names.data_bucket,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="raw-events-retention",
                    prefix=EVENTS_PREFIX,
                    expiration=Duration.days(event_retention_days),
                    # Versioning would otherwise keep "deleted" events: retention means gone.
                    # The delete markers this leaves behind are removed by the same Days
                    # expiration once old enough; S3 rejects ExpiredObjectDeleteMarker (even
                    # false) next to Days or Date, so the rule must not carry it.
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    # Payloads of dead letters too big for SQS: kept as long as the queue
                    # keeps its messages, plus time to replay them.
                    id="dead-letter-payloads",
                    prefix=DEAD_LETTER_PREFIX,
                    expiration=Duration.days(DEAD_LETTER_RETENTION_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="pipeline-working-data",
                    prefix=PIPELINE_PREFIX,
                    expiration=Duration.days(PIPELINE_RETENTION_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="model-bundle-history",
                    prefix=MODELS_PREFIX,
                    noncurrent_version_expiration=Duration.days(MODEL_NONCURRENT_DAYS),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )

        self.stream = kinesis.Stream(
            self,
            "Events",
            stream_name=names.events_stream,
            shard_count=kinesis_shards,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=Duration.hours(stream_retention_hours),
            removal_policy=removal_policy,
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=names.dead_letter_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DEAD_LETTER_QUEUE_RETENTION_DAYS),
            removal_policy=removal_policy,
        )
        # It is the dead-letter queue: a queue for its failures would have no reader.
        acknowledge(self.dead_letter_queue, "SQS3", "this queue is the dead-letter queue")

        self.database = rds.DatabaseCluster(
            self,
            "Catalog",
            engine=rds.DatabaseClusterEngine.aurora_postgres(
                version=rds.AuroraPostgresEngineVersion.VER_16_9
            ),
            writer=rds.ClusterInstance.serverless_v2("writer"),
            serverless_v2_min_capacity=aurora_min_acu,
            serverless_v2_max_capacity=aurora_max_acu,
            credentials=rds.Credentials.from_generated_secret("learnrec"),
            default_database_name=names.database_name,
            vpc=vpc,
            vpc_subnets=DATA_SUBNETS,
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=not destroy,
            backup=rds.BackupProps(retention=Duration.days(backup_days)),
            cloudwatch_logs_exports=["postgresql"],
            removal_policy=(RemovalPolicy.DESTROY if destroy else RemovalPolicy.SNAPSHOT),
        )
        self.database.connections.allow_default_port_from(
            app_security_group, "functions and SageMaker jobs"
        )
        assert self.database.secret is not None  # from_generated_secret always makes one
        self.database_secret = self.database.secret
        if destroy:
            # Only stages that are thrown away (dev) drop protection, so teardown works.
            acknowledge(self.database, "RDS10", "a disposable stage; prod is protected")
        # Clients connect with the port from the secret; moving it hides nothing.
        acknowledge(self.database, "RDS11", "clients take the port from the secret")

        self.jwt_secret = secretsmanager.Secret(
            self,
            "JwtKeys",
            secret_name=names.jwt_secret,
            description="Public JWT verification keys (JWKS) for the learnrec API",
            secret_string_value=SecretValue.unsafe_plain_text(EMPTY_JWKS),
            removal_policy=removal_policy,
        )
        self.user_id_hash_secret = secretsmanager.Secret(
            self,
            "UserIdHashKey",
            secret_name=names.user_id_hash_secret,
            description="Keyed-hash key for learner ids stored or logged by learnrec",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=removal_policy,
        )
        rotation: list[tuple[IConstruct, str]] = [
            (
                self.jwt_secret,
                "public keys: rotate by adding the new key to the JWKS, then removing the "
                "old one after the token lifetime (RUNBOOK.md)",
            ),
            (
                self.user_id_hash_secret,
                "rotating the hashing key would orphan every stored hashed id (history, "
                "events); it must stay stable",
            ),
            (
                self.database,  # its generated secret is a child of the cluster
                "the functions build DATABASE_URL at cold start; rotation needs "
                "reconnect-on-auth-failure in the core first (MAINTENANCE.md)",
            ),
        ]
        for secret, reason in rotation:
            acknowledge(secret, "SMG4", reason)
