"""Deployment stages and the names of their AWS resources, in one place.

The CDK app (``cdk/app.py``) builds each stage's resources from a :class:`StageConfig`
and passes the values into its constructs; the local AWS (``learnrec_dev.local.aws``) creates
the same resources under the same names from the same configuration, so code that works
against moto server on 127.0.0.1:4566 finds what it would find in the account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StageName = Literal["dev", "staging", "prod"]
STAGES: tuple[StageName, ...] = ("dev", "staging", "prod")

#: moto server's fixed account; LocalStack uses the same one.
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"

# Prefixes inside the data bucket: each kind of object has its own lifecycle.
EVENTS_PREFIX = "events/"  # raw events written by the ingest function, expire after 90 days
MODELS_PREFIX = "models/"  # versioned model bundles and the active-version pointer
PIPELINE_PREFIX = "pipeline/"  # per-run working data of the retraining pipeline
DIGESTS_PREFIX = "digests/"  # batch recommendations, deleted a day after they are written
#: The JWT secret of a fresh stage (cdk/learnrec_cdk/data.py creates it so): public keys
#: come from the operator's identity provider, so there are none until bootstrap.
EMPTY_JWT_SECRET = '{"jwks": {"keys": []}}'


@dataclass(frozen=True)
class ResourceNames:
    """Physical names shared by the CDK app, the local AWS, settings and the CLI."""

    stage: str
    account: str = LOCAL_ACCOUNT
    region: str = LOCAL_REGION

    @property
    def prefix(self) -> str:
        return f"learnrec-{self.stage}"

    @property
    def data_bucket(self) -> str:
        # Bucket names are global: account and region keep stages of forks apart.
        return f"{self.prefix}-data-{self.account}-{self.region}"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}-events"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-events-dlq"

    @property
    def jwt_secret(self) -> str:
        return f"learnrec/{self.stage}/jwt"

    @property
    def user_id_hash_secret(self) -> str:
        return f"learnrec/{self.stage}/user-id-hash-key"

    @property
    def database_name(self) -> str:
        return "learnrec"

    @property
    def database_proxy(self) -> str:
        return f"{self.prefix}-catalog"

    @property
    def opensearch_alias(self) -> str:
        return "learnrec-items"

    @property
    def model_package_group(self) -> str:
        return f"{self.prefix}-models"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-retrain"

    @property
    def api_function(self) -> str:
        return f"{self.prefix}-api"

    @property
    def ingest_function(self) -> str:
        return f"{self.prefix}-ingest"

    @property
    def pipeline_function(self) -> str:
        return f"{self.prefix}-pipeline"

    @property
    def migrate_function(self) -> str:
        return f"{self.prefix}-migrate"

    @property
    def maintenance_function(self) -> str:
        return f"{self.prefix}-maintenance"

    @property
    def search_security_function(self) -> str:
        return f"{self.prefix}-search-security"

    @property
    def model_store_url(self) -> str:
        """``MODEL_STORE`` for serving: the bundles' prefix in the data bucket."""
        return f"s3://{self.data_bucket}/{MODELS_PREFIX.rstrip('/')}"


@dataclass(frozen=True)
class Alarms:
    """Alarm thresholds, in one place so the alarms, the dashboard and the runbook agree."""

    p95_latency_ms: float = 300.0
    p95_latency_minutes: int = 5
    error_rate_percent: float = 2.0
    error_rate_minutes: int = 10
    drift_score: float = 0.2  # population stability index; above 0.2 is a real shift
    iterator_age_ms: int = 60_000
    dead_letter_messages: int = 1
    # Recommend responses served by a fallback (popularity, retrieval order) as a share of
    # all recommend responses: a silent fall back to popularity is an incident.
    fallback_rate_percent: float = 10.0
    fallback_rate_minutes: int = 10
    # The version a canary deployment brings in, judged on its own responses only: 5xx
    # (app errors and unhandled exceptions) and fallbacks, over a few minutes of the
    # canary window; below ``canary_min_responses`` a minute is not judged.
    canary_error_rate_percent: float = 5.0
    canary_fallback_rate_percent: float = 20.0
    canary_minutes: int = 2
    canary_min_responses: int = 5
    # Lambda throttles (api, ingest, pipeline) and API Gateway 429s per minute.
    function_throttles: int = 1
    throttled_requests: int = 10
    throttle_minutes: int = 3
    # OpenSearch: JVM memory pressure (%) sustained this long precedes out-of-memory
    # errors and a red cluster; yellow means unassigned replicas, which only a domain with
    # replicas (several data nodes) can have.
    jvm_memory_pressure_percent: float = 85.0
    jvm_memory_pressure_minutes: int = 15
    search_yellow_minutes: int = 30
    # Aurora Serverless v2: CPU, capacity close to the stage's maximum ACU, connections.
    aurora_cpu_percent: float = 80.0
    aurora_capacity_percent_of_max: float = 90.0
    aurora_connections: int = 500
    aurora_minutes: int = 15


@dataclass(frozen=True)
class Schedules:
    """EventBridge cron expressions (UTC). Sunday's 02:00 belongs to the full retrain,
    which rebuilds the ranker too, so the daily ranking run skips it."""

    full_retrain: str = "cron(0 2 ? * SUN *)"
    ranking_retrain: str = "cron(0 2 ? * MON-SAT *)"


@dataclass(frozen=True)
class StageConfig:
    """Everything that differs between dev, staging and prod."""

    stage: StageName
    names: ResourceNames
    event_retention_days: int = 90
    # How long Kinesis keeps records (24 h: the default, in the shard price; up to 8760).
    # Prod keeps a week, so a record that was dead-lettered on a Friday night can still be
    # read back and replayed from the stream after the weekend (RUNBOOK.md).
    stream_retention_hours: int = 24
    kinesis_shards: int = 1
    api_throttle_rate: float = 100.0
    api_throttle_burst: int = 200
    api_memory_mb: int = 2048
    ingest_memory_mb: int = 1024
    ingest_batch_size: int = 500
    provisioned_concurrency: int = 0
    canary_percent: int = 10
    canary_minutes: int = 5
    opensearch_instance_type: str = "r6g.large.search"
    opensearch_instances: int = 1
    aurora_min_acu: float = 0.5
    aurora_max_acu: float = 4.0
    training_instance_type: str = "ml.m5.xlarge"
    # Claims the API requires of every bearer token (JWT_ISSUER, JWT_AUDIENCE): the
    # identity provider's issuer and this stage's API as audience, so a token minted for
    # one stage is refused by the others. None: the defaults of :attr:`token_issuer`.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Two zone names (e.g. to avoid a zone short of an instance type); empty: the
    # region's first two, resolved by CloudFormation at deploy time.
    availability_zones: tuple[str, ...] = ()
    alarms: Alarms = field(default_factory=Alarms)
    schedules: Schedules = field(default_factory=Schedules)
    schedules_enabled: bool = True

    @property
    def token_issuer(self) -> str:
        """``iss`` of this stage's tokens: the configured issuer, else ``learnrec-<stage>``
        (the issuer of tokens signed with the keys ``learnrec deploy bootstrap`` makes)."""
        return self.jwt_issuer or f"learnrec-{self.stage}"

    @property
    def token_audience(self) -> str:
        """``aud`` of this stage's tokens: the configured audience, else the stage's API."""
        return self.jwt_audience or f"learnrec-{self.stage}-api"

    @classmethod
    def for_stage(
        cls, stage: StageName, account: str = LOCAL_ACCOUNT, region: str = LOCAL_REGION
    ) -> StageConfig:
        names = ResourceNames(stage, account, region)
        if stage == "prod":
            return cls(
                stage,
                names,
                kinesis_shards=2,
                stream_retention_hours=7 * 24,
                provisioned_concurrency=2,
                opensearch_instances=2,
                aurora_max_acu=16.0,
            )
        if stage == "staging":
            return cls(stage, names)
        return cls(stage, names, schedules_enabled=False, api_throttle_rate=20.0)
