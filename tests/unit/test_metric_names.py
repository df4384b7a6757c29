"""The metric names the stack watches (learnrec.metric_names.emitted) are the ones the
code publishes: the ingest outcome's counts, the API's fallbacks, the maintenance run's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from learnrec import metric_names
from learnrec.events.ingest import BatchOutcome
from learnrec.pipeline.drift import METRIC_NAME, METRIC_NAMESPACE
from learnrec.serving.recommender import Fallback

REPO = Path(__file__).resolve().parents[2]


def test_ingest_publishes_exactly_its_names() -> None:
    assert set(BatchOutcome().metrics()) == metric_names.emitted()[metric_names.INGEST]


def test_the_fallbacks_are_the_recommenders() -> None:
    assert tuple(f.value for f in Fallback) == metric_names.FALLBACKS
    assert metric_names.fallback_metric(Fallback.POPULARITY) == (
        "recommend_fallback_popularity_total"
    )


def test_drift_is_published_under_the_shared_name() -> None:
    assert (METRIC_NAMESPACE, METRIC_NAME) == (metric_names.NAMESPACE, metric_names.DRIFT)
    assert METRIC_NAME in metric_names.emitted()[metric_names.PIPELINE]


def test_a_maintenance_section_must_be_one_the_report_has() -> None:
    assert metric_names.maintenance_metric("erasure", "events_rewritten") == (
        "erasure_events_rewritten"
    )
    with pytest.raises(ValueError, match="unknown"):
        metric_names.maintenance_metric("erasures", "x")


def test_maintenance_handler_publishes_the_incomplete_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "functions" / "maintenance" / "handler.py"
    spec = importlib.util.spec_from_file_location("maintenance_handler_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = {"erasure": {"complete": False, "learners": 2}, "retention": {"bundles": ["v1"]}}
    monkeypatch.setattr(module, "run_maintenance", lambda seconds_left: report)

    class Context:
        function_name = "learnrec-test-maintenance"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:m"
        aws_request_id = "r1"

        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    Metrics(namespace=metric_names.NAMESPACE).clear_metrics()
    module.handler({}, Context())
    emf: dict[str, Any] = next(
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "_aws" in line
    )

    def value(name: str) -> float:
        published = emf[name]  # one value, or the list of those added this invocation
        return float(sum(published) if isinstance(published, list) else published)

    assert value(metric_names.ERASURE_INCOMPLETE) == 1.0
    assert value("erasure_learners") == 2.0 and value("retention_bundles") == 1.0
    assert emf[metric_names.SERVICE_DIMENSION] == metric_names.MAINTENANCE
    directives = emf["_aws"]["CloudWatchMetrics"][0]
    assert directives["Namespace"] == metric_names.NAMESPACE
