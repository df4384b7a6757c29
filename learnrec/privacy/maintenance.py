"""One maintenance run: the erasure sweep, then retention, with their reports.

The maintenance function runs it on a schedule (every six hours in AWS); ``learnrec
privacy sweep`` runs it by hand, for example to prove an erasure for one learner at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from learnrec.config import Settings, get_settings
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.privacy.erasure import ErasureSweep
from learnrec.privacy.retention import RetentionPolicy, RetentionSweep
from learnrec.storage import IngestStore, PrivacyStore, make_engine
from learnrec.storage.schema import require_schema
from learnrec.storage.url import database_url

SCHEDULE_HOURS = 6
"""How often the stack runs the sweep; with its grace period, an erasure is out of every
store outside the database within :data:`ERASURE_BOUND` (docs/RUNBOOK.md)."""
ERASURE_BOUND = timedelta(hours=24)


def run_maintenance(
    settings: Settings | None = None,
    *,
    session: Any = None,
    now: datetime | None = None,
    seconds_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Sweep erasures, then enforce retention; a JSON-ready report of both."""
    import boto3

    settings = settings or get_settings()
    session = session or boto3.Session()
    bucket, models_prefix = _model_location(settings)
    secrets = session.client("secretsmanager")
    engine = make_engine(database_url(settings, secrets), settings=settings)
    try:
        require_schema(engine)
        privacy = PrivacyStore(engine)
        s3 = session.client("s3")
        now = now or datetime.now(UTC)
        erasure = ErasureSweep(
            s3=s3,
            bucket=bucket,
            privacy=privacy,
            hash_id=UserIdHasher(user_id_hash_key(settings, secrets)),
            models_prefix=models_prefix,
            sqs=session.client("sqs") if settings.dead_letter_queue_url else None,
            queue_url=settings.dead_letter_queue_url,
            seconds_left=seconds_left,
        ).run(now)
        retention = RetentionSweep(
            s3=s3,
            bucket=bucket,
            privacy=privacy,
            ledger=IngestStore(engine),
            models_prefix=models_prefix,
            policy=RetentionPolicy(
                history=timedelta(days=settings.event_retention_days),
                dedupe_window=timedelta(days=settings.dedupe_window_days),
            ),
        ).run(now)
    finally:
        engine.dispose()
    return {"at": now.isoformat(), "erasure": erasure.to_json(), "retention": retention.to_json()}


def _model_location(settings: Settings) -> tuple[str, str]:
    """(bucket, prefix) of the model store; the data bucket holds events and models alike."""
    parsed = urlparse(settings.model_store)
    if parsed.scheme != "s3":
        raise ValueError(
            f"MODEL_STORE is {settings.model_store!r}: the sweeps work on the stage's S3 "
            "bucket (s3://bucket/prefix)"
        )
    if settings.s3_bucket and settings.s3_bucket != parsed.netloc:
        raise ValueError("MODEL_STORE and S3_BUCKET name different buckets")
    return parsed.netloc, parsed.path.strip("/") or "models"
