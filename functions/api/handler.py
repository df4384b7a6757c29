"""Lambda entry point of the API: API Gateway REST proxy events -> FastAPI via Mangum.

Only adapts: the app, its dependencies and all logic live in learnrec.serving.
Logs are structured JSON with the API Gateway request id and the caller's hashed user
id (never the raw one); metrics go out as CloudWatch EMF, per service and per function
version (:mod:`learnrec.serving.telemetry`), with every response counted by status
class, so a canary is judged on its own 5xx and fallback rates; traces to X-Ray, which
record timings only: no response, no exception text (both can carry a raw user id).

The Tracer exists only when tracing is on: creating one imports the X-Ray SDK (and
botocore through it) even when tracing is disabled, about a third of a second of every
cold start spent for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from mangum import Mangum

from learnrec.metric_names import API, NAMESPACE
from learnrec.serving.api import create_app
from learnrec.serving.context import ServingContext, build_context
from learnrec.serving.readiness import ContextLoader
from learnrec.serving.telemetry import add_version_dimensions, count_response

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def tracing_enabled() -> bool:
    """Powertools' own rule: on in Lambda unless POWERTOOLS_TRACE_DISABLED or an emulator."""
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    emulated = os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE")
    return bool(os.getenv("LAMBDA_TASK_ROOT")) and not emulated


logger = Logger(service="learnrec-api")
# The app's own lines (a dependency down, a degraded answer) go to the same structured
# log, so they carry the request id and the hashed learner the request is for.
copy_config_to_registered_loggers(source_logger=logger, include={"learnrec"})
SERVICE = API
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
REQUEST_KEYS = ("user",)
"""The log keys one request appends; removed when it ends, so no later line carries them.
(Not ``clear_state``: it would also drop the logger name the line above adds.)"""


def _emit(name: str, value: float, unit: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)


app = create_app(lambda: build_context(metrics=_emit))
_loader: ContextLoader[ServingContext] = app.state.context_loader
_mangum = Mangum(app, lifespan="off")


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    add_version_dimensions(metrics, SERVICE, os.environ)
    user_id = (event.get("pathParameters") or {}).get("user_id")
    serving = _loader.loaded
    try:
        if user_id and serving is not None:
            logger.append_keys(user=serving.user_key(user_id))  # the route reuses it
        response: dict[str, Any] = _mangum(event, context)
    except Exception:
        count_response(metrics, 500)  # API Gateway answers 502 for it; a server error
        raise
    finally:
        logger.remove_keys(REQUEST_KEYS)
    count_response(metrics, int(response.get("statusCode", 500)))
    return response


def _traced(function: Handler) -> Handler:
    if not tracing_enabled():
        return function
    from aws_lambda_powertools import Tracer

    # Responses echo the learner's raw id (and profiles, recommendations): recording them
    # as trace metadata would store raw ids in X-Ray, whatever POWERTOOLS_TRACER_CAPTURE_*
    # says. An exception's text may quote its input, so it stays out of traces too (it is
    # counted as a 5xx; the logs have the request id to find it).
    traced: Handler = Tracer(service="learnrec-api").capture_lambda_handler(
        function, capture_response=False, capture_error=False
    )
    return traced


handler: Handler = logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST
)(metrics.log_metrics(_traced(_handle)))
