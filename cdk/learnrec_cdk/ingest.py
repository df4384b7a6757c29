"""The events path's consumer: Kinesis -> the ingest Lambda -> S3 archive and history.

Batches of up to the stage's batch size (or five seconds' worth); the function reports
the records it could not store (partial batch response) so only those are retried; a
poison record is isolated by bisecting the batch, and after the retries its metadata
goes to the dead-letter queue, from which ``learnrec`` can replay it (RUNBOOK.md).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from learnrec.events.dead_letter import DEAD_LETTER_PREFIX
from learnrec.stages import EVENTS_PREFIX, StageConfig

from .functions import FunctionPlatform
from .nag import acknowledge_prefix_grant

RETRY_ATTEMPTS = 5
# Older records than this are dead-lettered instead of blocking the shard behind them.
MAX_RECORD_AGE = Duration.hours(6)
BATCH_WINDOW = Duration.seconds(5)


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        config: StageConfig,
        stream: kinesis.IStream,
        dead_letter_queue: sqs.IQueue,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        ingest = platform.function(
            self,
            "Ingest",
            package="ingest",
            function_name=config.names.ingest_function,
            description="learnrec event ingestion: Kinesis -> S3 archive and learner history",
            memory_mb=config.ingest_memory_mb,
            timeout=Duration.minutes(2),
            environment=platform.environment("ingest"),
        )
        self.function = ingest.function
        self.role = ingest.role
        self.event_source = sources.KinesisEventSource(
            stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=config.ingest_batch_size,
            max_batching_window=BATCH_WINDOW,
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            retry_attempts=RETRY_ATTEMPTS,
            max_record_age=MAX_RECORD_AGE,
            on_failure=sources.SqsDlq(dead_letter_queue),
        )
        self.function.add_event_source(self.event_source)
        # Raw events, and dead letters too big for an SQS message: never the model
        # bundles or the pipeline's data.
        prefixes = [f"{EVENTS_PREFIX}*", f"{DEAD_LETTER_PREFIX}*"]
        for prefix in prefixes:
            bucket.grant_put(self.role, prefix)
        acknowledge_prefix_grant(self.role, bucket, "put", prefixes)
        # Records the function rejects as invalid go to the same queue (learnrec.events).
        dead_letter_queue.grant_send_messages(self.role)
