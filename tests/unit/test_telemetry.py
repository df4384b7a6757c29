"""The api's EMF output: every metric per service and per function version, responses by
status class. Real Powertools ``Metrics``; the EMF documents are read back from stdout,
where Lambda's log agent would pick them up."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from learnrec import metric_names
from learnrec.serving import telemetry
from learnrec.serving.recommender import Fallback


def emf_documents(out: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def invoke(metrics: Metrics, environ: dict[str, str], statuses: list[int]) -> None:
    """One Lambda invocation as functions/api/handler.py makes it: dimensions first."""

    @metrics.log_metrics
    def handler(event: Any, context: Any) -> None:
        telemetry.add_version_dimensions(metrics, "api", environ)
        metrics.add_metric(name=metric_names.SUCCESS, unit="Count", value=1)
        fallback = metric_names.fallback_metric(Fallback.POPULARITY)
        metrics.add_metric(name=fallback, unit="Count", value=1)
        for status in statuses:
            telemetry.count_response(metrics, status)

    handler({}, None)


def test_each_metric_is_published_per_service_and_per_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = Metrics(namespace=metric_names.NAMESPACE, service="api")
    invoke(metrics, {telemetry.VERSION_ENV: "42"}, [503])
    (document,) = emf_documents(capsys.readouterr().out)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "learnrec"
    # Two dimension sets: what the dashboard reads, and the same plus the version.
    assert directive["Dimensions"] == [["service"], ["service", "function_version"]]
    assert document["service"] == "api" and document["function_version"] == "42"
    names = {m["Name"] for m in directive["Metrics"]}
    assert names == {
        "recommend_success_total",
        "recommend_fallback_popularity_total",
        "http_responses_total",
        "http_responses_5xx_total",
    }
    assert document["http_responses_5xx_total"] == [1.0]


def test_responses_are_counted_by_status_class(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics(namespace=metric_names.NAMESPACE, service="api")
    invoke(metrics, {telemetry.VERSION_ENV: "3"}, [200, 404, 500, 502, 0])
    (document,) = emf_documents(capsys.readouterr().out)
    assert document["http_responses_total"] == [1.0] * 5
    assert document["http_responses_2xx_total"] == [1.0]
    assert document["http_responses_4xx_total"] == [1.0]
    # 500, 502 and a status outside HTTP's range (a broken response) are server errors.
    assert document["http_responses_5xx_total"] == [1.0, 1.0, 1.0]


def test_dimension_sets_do_not_pile_up_across_invocations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = Metrics(namespace=metric_names.NAMESPACE, service="api")
    for version in ("7", "7", "8"):
        invoke(metrics, {telemetry.VERSION_ENV: version}, [200])
    documents = emf_documents(capsys.readouterr().out)
    assert [d["function_version"] for d in documents] == ["7", "7", "8"]
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["service"], ["service", "function_version"]]


def test_outside_lambda_only_the_service_dimension(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics(namespace=metric_names.NAMESPACE, service="api")
    assert telemetry.add_version_dimensions(metrics, "api", {}) is None
    invoke(metrics, {telemetry.VERSION_ENV: "  "}, [200])
    (document,) = emf_documents(capsys.readouterr().out)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert "function_version" not in document


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (204, "2xx"), (301, "3xx"), (429, "4xx"), (503, "5xx"), (600, "5xx")],
)
def test_status_class(status: int, expected: str) -> None:
    assert telemetry.status_class(status) == expected
