"""Deployment stages and the names of their AWS resources, in one place.

The CDK app (``cdk/app.py``) builds each stage's resources from a :class:`StageConfig`
and passes the values into its constructs; the local AWS (``learnrec.local.aws``) creates
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
    def search_security_function(self) -> str:
        return f"{self.prefix}-search-security"

    @property
    def model_store_url(self) -> str:
        """``MODEL_STORE`` for serving: the bundles' prefix in the data bucket."""
        return f"s3://{self.data_bucket}/{MODELS_PREFIX.rstrip('/')}"


@dataclass(frozen=True)
class Alarms:
    """Thresholds from DESIGN.md; one place so the dashboard and runbook agree."""

    p95_latency_ms: float = 300.0
    p95_latency_minutes: int = 5
    error_rate_percent: float = 2.0
    error_rate_minutes: int = 10
    drift_score: float = 0.2  # population stability index; above 0.2 is a real shift
    iterator_age_ms: int = 60_000
    dead_letter_messages: int = 1


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
    # Two zone names (e.g. to avoid a zone short of an instance type); empty: the
    # region's first two, resolved by CloudFormation at deploy time.
    availability_zones: tuple[str, ...] = ()
    alarms: Alarms = field(default_factory=Alarms)
    schedules: Schedules = field(default_factory=Schedules)
    schedules_enabled: bool = True

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
