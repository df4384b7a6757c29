"""Lambda entry point of the scheduled maintenance: the erasure sweep, then retention.

Only adapts: :func:`learnrec.privacy.maintenance.run_maintenance` does the work, with
the invocation's remaining time as its budget, so a sweep that cannot finish stops
cleanly before Lambda's timeout and the next scheduled run starts it over. Such a run
is not a failure (the tombstones stay pending), so it is logged as a warning and the
report returned; an exception (the database or a store unreachable) is raised, so the
invocation counts as an error in the function's metrics and EventBridge retries it.
The log line and the metrics carry counts only: learners' ids never leave the database.
Configuration comes from the environment (``DATABASE_SECRET_ARN`` and
``DATABASE_HOST``, ``S3_BUCKET``, ``MODEL_STORE``, ``DEAD_LETTER_QUEUE_URL``,
``USER_ID_HASH_SECRET_ID``, ``EVENT_RETENTION_DAYS``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from learnrec import metric_names
from learnrec.privacy.maintenance import run_maintenance

logger = Logger(service="learnrec-maintenance")
metrics = Metrics(namespace=metric_names.NAMESPACE, service=metric_names.MAINTENANCE)


def counts(report: dict[str, Any]) -> dict[str, int]:
    """A section of the report as numbers: lists (e.g. deleted bundle versions) by length."""
    numbers: dict[str, int] = {}
    for name, value in report.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            numbers[name] = value
        elif isinstance(value, list):
            numbers[name] = len(value)
    return numbers


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        report = run_maintenance(seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
    except Exception:
        logger.exception("maintenance failed; the next scheduled run starts over")
        raise
    erasure, retention = counts(report["erasure"]), counts(report["retention"])
    complete = bool(report["erasure"]["complete"])
    for prefix, section in (("erasure", erasure), ("retention", retention)):
        for name, value in section.items():
            metric = metric_names.maintenance_metric(prefix, name)
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)
    metrics.add_metric(
        name=metric_names.ERASURE_INCOMPLETE, unit=MetricUnit.Count, value=int(not complete)
    )
    summary = {"erasure": {**erasure, "complete": complete}, "retention": retention}
    if complete:
        logger.info("maintenance done", extra=summary)
    else:
        logger.warning("erasure sweep ran out of time; the next run continues", extra=summary)
    return report
