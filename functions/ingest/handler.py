"""Lambda entry point of event ingestion: Kinesis batches -> S3 archive and learner history.

Only adapts: :class:`learnrec.events.ingest.Ingestor` does the work on the batch as a
whole (one S3 object, one database transaction, dead letters ten at a time), and
Powertools' batch processor turns the records it could not store into a partial batch
response, so Kinesis redelivers those and nothing else. Configuration comes from the
environment (``DATABASE_URL``, ``S3_BUCKET``, ``DEAD_LETTER_QUEUE_URL``,
``USER_ID_HASH_KEY`` or ``USER_ID_HASH_SECRET_ID``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)

from learnrec import metric_names
from learnrec.events.ingest import BatchOutcome, Ingestor, ingestor_from_settings, summarise
from learnrec.events.stream import records_from_event

logger = Logger(service="learnrec-ingest")
metrics = Metrics(namespace=metric_names.NAMESPACE, service=metric_names.INGEST)
# A batch that failed as a whole is reported record by record like any other failure,
# rather than raised: the poller and Lambda then treat both cases the same way.
processor = BatchProcessor(
    event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False
)
_state: dict[str, Ingestor] = {}


class RecordNotStoredError(RuntimeError):
    """The record's batch could not be archived or recorded; Kinesis must redeliver it."""


def _ingestor() -> Ingestor:
    if "ingestor" not in _state:
        _state["ingestor"] = ingestor_from_settings()
    return _state["ingestor"]


def _outcome(event: dict[str, Any]) -> BatchOutcome:
    records = records_from_event(event)
    try:
        ingestor = _ingestor()
    except Exception as error:  # e.g. the secret or database is unreachable at start-up
        logger.exception("ingest dependencies unavailable")
        return BatchOutcome(
            records=len(records),
            failed=[r.sequence_number for r in records],
            errors=[f"not configured: {error}"],
        )
    return ingestor.process(records)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    outcome = _outcome(event)
    for name, value in outcome.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("batch ingested", extra=summarise(outcome))
    failed = set(outcome.failed)
    reason = "; ".join(outcome.errors)

    def record_handler(record: KinesisStreamRecord) -> None:
        if record.kinesis.sequence_number in failed:
            raise RecordNotStoredError(reason)

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
