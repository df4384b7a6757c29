"""Lambda entry point of the API: API Gateway REST proxy events -> FastAPI via Mangum.

Only adapts: the app, its dependencies and all logic live in learnrec.serving.
Logs are structured JSON with the API Gateway request id and the caller's hashed user
id (never the raw one); metrics go out as CloudWatch EMF; traces to X-Ray.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from learnrec.events.producer import hash_user_id
from learnrec.serving.api import ServingContext, create_app
from learnrec.serving.context import build_context

logger = Logger(service="learnrec-api")
metrics = Metrics(namespace="learnrec", service="api")
tracer = Tracer(service="learnrec-api")
_context: dict[str, ServingContext] = {}


def _build() -> ServingContext:
    context = build_context()
    context.metrics = lambda name, value, unit: metrics.add_metric(
        name=name, unit=MetricUnit(unit), value=value
    )
    _context["ctx"] = context
    return context


app = create_app(_build)
_mangum = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    user_id = (event.get("pathParameters") or {}).get("user_id")
    if user_id and "ctx" in _context:
        logger.append_keys(user=hash_user_id(user_id, _context["ctx"].hash_key))
    response: dict[str, Any] = _mangum(event, context)
    return response
