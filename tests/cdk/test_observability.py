"""The alarms with the stage's thresholds, the dashboard, and the runbook
section every alarm must have."""

from __future__ import annotations

import json
import re
from typing import Any

from .conftest import REPO, Synthesized


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


def _metric_names(alarm: dict[str, Any]) -> set[str]:
    if "MetricName" in alarm:
        return {alarm["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}


def test_fallback_throttle_search_and_aurora_alarms(each_stage: Synthesized) -> None:
    t = each_stage.config.alarms
    alarms = _alarms(each_stage)
    prefix = f"learnrec-{each_stage.stage}-"

    fallback = alarms[prefix + "FallbackRate"]
    assert fallback["Threshold"] == t.fallback_rate_percent
    assert fallback["EvaluationPeriods"] == fallback["DatapointsToAlarm"] == t.fallback_rate_minutes
    assert _metric_names(fallback) == {
        "recommend_success_total",
        "recommend_fallback_popularity_total",
        "recommend_fallback_retrieval_order_total",
        "recommend_fallback_exact_retrieval_total",
    }
    for metric in fallback["Metrics"]:
        if "MetricStat" in metric:  # service-wide: every version's responses
            assert metric["MetricStat"]["Metric"]["Dimensions"] == [
                {"Name": "service", "Value": "api"}
            ]

    throttles = alarms[prefix + "FunctionThrottles"]
    assert throttles["Threshold"] == t.function_throttles
    functions = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for m in throttles["Metrics"]
        if "MetricStat" in m
    }
    assert _metric_names(throttles) == {"Throttles"} and len(functions) == 4
    lambdas = each_stage.resources("AWS::Lambda::Function")
    names = each_stage.config.names
    assert {lambdas[f]["Properties"]["FunctionName"] for f in functions} == {
        names.api_function,
        names.ingest_function,
        names.pipeline_function,
        names.maintenance_function,
    }

    maintenance = alarms[prefix + "MaintenanceFailed"]
    assert maintenance["EvaluationPeriods"] == maintenance["DatapointsToAlarm"] == 2
    assert _metric_names(maintenance) == {"Errors", "erasure_incomplete"}
    assert {m["MetricStat"]["Period"] for m in maintenance["Metrics"] if "MetricStat" in m} == {
        6 * 3600
    }
    throttled = alarms[prefix + "ApiThrottled"]
    assert throttled["Threshold"] == t.throttled_requests
    (metric_filter,) = each_stage.resources("AWS::Logs::MetricFilter").values()
    (transformation,) = metric_filter["Properties"]["MetricTransformations"]
    assert metric_filter["Properties"]["FilterPattern"] == '{ $.status = "429" }'
    assert (throttled["Namespace"], throttled["MetricName"]) == (
        transformation["MetricNamespace"],
        transformation["MetricName"],
    )
    (stage,) = each_stage.resources("AWS::ApiGateway::Stage").values()
    access_log = stage["Properties"]["AccessLogSetting"]
    assert (
        access_log["DestinationArn"]["Fn::GetAtt"][0]
        == metric_filter["Properties"]["LogGroupName"]["Ref"]
    )
    assert '"status":"$context.status"' in access_log["Format"]

    (domain_id,) = each_stage.resources("AWS::OpenSearchService::Domain")
    search = {
        name: alarms[prefix + name]
        for name in ("SearchRed", "SearchWritesBlocked", "SearchJvmPressure")
    }
    replicas = each_stage.config.opensearch_instances > 1
    assert (prefix + "SearchYellow" in alarms) == replicas
    if replicas:
        search["SearchYellow"] = alarms[prefix + "SearchYellow"]
    for alarm in search.values():
        assert alarm["Namespace"] == "AWS/ES" and alarm["Statistic"] == "Maximum"
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions == {"DomainName": {"Ref": domain_id}, "ClientId": "123456789012"}
    assert search["SearchRed"]["MetricName"] == "ClusterStatus.red"
    assert search["SearchWritesBlocked"]["MetricName"] == "ClusterIndexWritesBlocked"
    assert search["SearchJvmPressure"]["MetricName"] == "JVMMemoryPressure"
    assert search["SearchJvmPressure"]["Threshold"] == t.jvm_memory_pressure_percent

    (cluster_id,) = each_stage.resources("AWS::RDS::DBCluster")
    aurora = {
        "AuroraCpu": ("CPUUtilization", t.aurora_cpu_percent),
        "AuroraCapacity": ("ACUUtilization", t.aurora_capacity_percent_of_max),
        "AuroraConnections": ("DatabaseConnections", t.aurora_connections),
    }
    for name, (metric, threshold) in aurora.items():
        alarm = alarms[prefix + name]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/RDS", metric)
        assert alarm["Dimensions"] == [
            {"Name": "DBClusterIdentifier", "Value": {"Ref": cluster_id}}
        ]
        assert alarm["Threshold"] == threshold
        assert alarm["EvaluationPeriods"] == t.aurora_minutes


def test_every_alarm_is_named_notifies_and_has_a_runbook_section(
    each_stage: Synthesized,
) -> None:
    runbook = (REPO / "docs" / "RUNBOOK.md").read_text()
    sections = set(re.findall(r"^## learnrec-&lt;stage&gt;-(\w+)$", runbook, re.MULTILINE))
    prefix = f"learnrec-{each_stage.stage}-"
    named = []
    for logical_id, alarm in each_stage.resources("AWS::CloudWatch::Alarm").items():
        name = alarm["Properties"].get("AlarmName", "")
        assert name.startswith(prefix), f"{logical_id} has no learnrec-<stage>- name"
        named.append(name.removeprefix(prefix))
    missing = sorted(set(named) - sections)
    assert not missing, f"RUNBOOK.md lacks a section for {missing}"
    notifying = _alarms(each_stage)
    for name in set(named) - {"CanaryErrors"}:  # CanaryErrors acts by rolling back
        assert notifying[prefix + name]["AlarmActions"], name


def test_dashboard_shows_the_thresholds_of_the_new_alarms(each_stage: Synthesized) -> None:
    t = each_stage.config.alarms
    dashboard = next(iter(each_stage.resources("AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for signal in (
        "Fallback share",
        "ClusterStatus.red",
        "JVMMemoryPressure",
        "ACUUtilization",
        "DatabaseConnections",
        "Throttles",
        "function_version",
    ):
        assert signal in body, signal
    for threshold in (
        t.fallback_rate_percent,
        t.jvm_memory_pressure_percent,
        t.aurora_cpu_percent,
        t.aurora_capacity_percent_of_max,
        t.aurora_connections,
    ):
        assert f'\\"value\\":{threshold:g}' in body, threshold
