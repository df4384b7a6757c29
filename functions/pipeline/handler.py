"""Lambda entry point of the pipeline's function steps (the state machine invokes it).

Input ``{"step": "start", "request": {"mode": "full"|"ranking", "stage": "prod",
"bucket": "<data bucket>", "window_days": 28, "window_end": "<ISO 8601, optional>",
"hyperparameters": {"train_retrieval": {"epochs": "30"}}, "tolerance": 0.01,
"baseline_tolerance": 0.02, "k": 10}}``
-> ``{"step": "start", "run": {<run document>}}``: the run every later state passes on
as ``$.run`` (learnrec.pipeline.run.RunContext; only ``mode`` and ``stage`` are needed,
``bucket`` in a real account), also written to ``pipeline/<run id>/run/run.json`` for
the processing jobs. Hyperparameters SageMaker would refuse are refused here.

Input ``{"step": "register" | "promote", "run": {<run document>}}`` -> ``{"step": name,
"ok": true, ...}`` with, for ``register``: ``version``, ``bundle_uri``,
``model_package_arn``, ``model_drift_score``; for ``promote``: ``version``,
``promoted`` (bool), ``reason``, ``active`` (the active version afterwards); with
``VECTOR_INDEX=opensearch`` promote moves the OpenSearch alias before the pointer.

A step that cannot do its job returns ``{"step": name, "ok": false, "error": reason}``
rather than raising, so the state machine can fail the execution with that reason
(a Choice on ``ok``); AWS errors raise and are retried by the state machine. The logic
lives in learnrec.pipeline.functions.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from learnrec.pipeline.functions import handle

logger = Logger(service="learnrec-pipeline")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = handle(event)
    logger.info("pipeline step", extra={"result": result})
    return result
