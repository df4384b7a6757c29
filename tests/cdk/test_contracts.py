"""What the stack watches and configures is what the code emits and reads.

Every application metric an alarm or the dashboard reads is one a function publishes
(:func:`learnrec.metric_names.emitted`), every function's variables are the ones
:mod:`learnrec.function_env` gives it, and the REST API answers an unknown route with
the body the local gateway answers it with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from learnrec.function_env import READS, FunctionName, Value, env_name, function_environment
from learnrec.metric_names import (
    EVENTS_RECEIVED,
    INGEST,
    NAMESPACE,
    SERVICE_DIMENSION,
    THROTTLED_NAMESPACE,
    emitted,
    throttled_metric,
)
from learnrec.serving.apigw import NO_ROUTE_BODY, NO_ROUTE_STATUS

from .conftest import Synthesized


def _alarm_metrics(alarm: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, dimensions) of each metric an alarm reads."""
    if "MetricName" in alarm:
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        yield alarm["Namespace"], alarm["MetricName"], dims
    for query in alarm.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            yield metric["Namespace"], metric["MetricName"], dims


def _dashboard_metrics(synth: Synthesized) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, dimensions) of each metric a dashboard widget plots."""
    for dashboard in synth.resources("AWS::CloudWatch::Dashboard").values():
        body = dashboard["Properties"]["DashboardBody"]
        parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
        # Tokens (function names, the region) sit inside JSON strings: any text will do.
        document = json.loads("".join(p if isinstance(p, str) else "token" for p in parts))
        for widget in document["widgets"]:
            for row in widget.get("properties", {}).get("metrics", []):
                fields = [field for field in row if not isinstance(field, dict)]
                if len(fields) >= 2:
                    pairs = fields[2:]
                    yield fields[0], fields[1], dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_every_metric_watched_is_one_the_code_emits(each_stage: Synthesized) -> None:
    published = emitted()
    throttled = {
        (t["MetricNamespace"], t["MetricName"])
        for f in each_stage.resources("AWS::Logs::MetricFilter").values()
        for t in f["Properties"]["MetricTransformations"]
    }
    alarms = each_stage.resources("AWS::CloudWatch::Alarm").values()
    watched = [m for a in alarms for m in _alarm_metrics(a["Properties"])]
    plotted = list(_dashboard_metrics(each_stage))
    assert (NAMESPACE, EVENTS_RECEIVED, {SERVICE_DIMENSION: INGEST}) in plotted
    watched += plotted
    ours = [(name, dims) for namespace, name, dims in watched if namespace == NAMESPACE]
    assert ours, "the stack watches none of the application's metrics"
    for name, dims in ours:
        service = dims[SERVICE_DIMENSION]
        assert name in published[service], f"{service} does not publish {name}"
    api_name = each_stage.config.names.api_function
    assert (THROTTLED_NAMESPACE, throttled_metric(api_name)) in throttled
    for namespace, name, _ in watched:
        if namespace == THROTTLED_NAMESPACE:
            assert (namespace, name) in throttled


def test_each_function_gets_what_function_env_gives_it(prod: Synthesized) -> None:
    names = prod.config.names
    functions = {
        f["Properties"].get("FunctionName"): f["Properties"]["Environment"]["Variables"]
        for f in prod.resources("AWS::Lambda::Function").values()
        if "Environment" in f["Properties"]
    }
    lambdas: tuple[FunctionName, ...] = ("api", "ingest", "pipeline", "maintenance", "migrate")
    for function in lambdas:
        variables = functions[getattr(names, f"{function}_function")]
        read = {env_name(field) for field in READS[function]}
        settings = set(variables) - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
        assert settings <= read, function
        assert variables["POWERTOOLS_SERVICE_NAME"] == function
    # The stack's values are tokens, so compare the names a plain build gives.
    sample: dict[str, Value] = {field: "x" for fields in READS.values() for field in fields}
    sample |= {"vector_index": "opensearch", "event_retention_days": 1, "api_docs": None}
    sample |= {"database_url": None, "user_id_hash_key": None, "model_check_interval_s": None}
    sample |= {"jwt_public_key": None, "jwt_jwks": None}
    api = set(function_environment("api", sample))
    assert set(functions[names.api_function]) == api


def test_an_unknown_route_gets_the_local_gateways_answer(prod: Synthesized) -> None:
    (missing,) = [
        r["Properties"]
        for r in prod.resources("AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["ResponseType"] == "MISSING_AUTHENTICATION_TOKEN"
    ]
    assert missing["StatusCode"] == str(NO_ROUTE_STATUS)
    template = missing["ResponseTemplates"]["application/json"]
    # API Gateway substitutes the message as a JSON string, quotes included.
    rendered = template.replace("$context.error.messageString", '"Missing Authentication Token"')
    assert json.loads(rendered) == NO_ROUTE_BODY
