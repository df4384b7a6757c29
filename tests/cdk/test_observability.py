"""The alarms of DESIGN.md with the stage's thresholds, and the dashboard."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Synthesized


def _alarms(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if "AlarmName" in a["Properties"]
    }


def test_design_alarms_with_stage_thresholds(each_stage: Synthesized) -> None:
    thresholds = each_stage.config.alarms
    alarms = _alarms(each_stage)
    prefix = f"learnrec-{each_stage.stage}-"

    latency = alarms[prefix + "LatencyP95"]
    assert latency["MetricName"] == "recommend_request_duration_seconds"
    assert latency["Namespace"] == "learnrec"
    assert latency["ExtendedStatistic"] == "p95"
    assert latency["Threshold"] == thresholds.p95_latency_ms / 1000
    assert latency["Period"] == 60
    assert latency["EvaluationPeriods"] == latency["DatapointsToAlarm"] == 5

    errors = alarms[prefix + "ErrorRate"]
    assert errors["Threshold"] == thresholds.error_rate_percent
    assert errors["EvaluationPeriods"] == errors["DatapointsToAlarm"] == 10
    expressions = [m["Expression"] for m in errors["Metrics"] if "Expression" in m]
    assert expressions and "100 * errors / requests" in expressions[0]

    drift = alarms[prefix + "Drift"]
    assert drift["MetricName"] == "model_drift_score"
    assert drift["Threshold"] == thresholds.drift_score
    assert {"Name": "stage", "Value": each_stage.stage} in drift["Dimensions"]

    lag = alarms[prefix + "IngestLag"]
    assert lag["MetricName"] == "IteratorAge"
    assert lag["Threshold"] == thresholds.iterator_age_ms

    dead = alarms[prefix + "DeadLetters"]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dead["Threshold"] == thresholds.dead_letter_messages
    assert dead["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    for alarm in (latency, errors, drift, lag, dead, alarms[prefix + "RetrainFailed"]):
        assert alarm["AlarmActions"], alarm  # notify the alarm topic


def test_dashboard_shows_each_signal(each_stage: Synthesized) -> None:
    dashboard = next(iter(each_stage.resources("AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for signal in (
        "recommend_request_duration_seconds",
        "p95",
        "5xx share",
        "recommend_success_total",
        "CTR",
        "model_drift_score",
        "IteratorAge",
        "model_score_mean",
    ):
        assert signal in body, signal


def test_alarm_topic_encrypted_and_tls_only(each_stage: Synthesized) -> None:
    topic = next(iter(each_stage.resources("AWS::SNS::Topic").values()))
    assert topic["Properties"]["KmsMasterKeyId"]
    policy = next(iter(each_stage.resources("AWS::SNS::TopicPolicy").values()))
    assert "aws:SecureTransport" in json.dumps(policy["Properties"]["PolicyDocument"])
