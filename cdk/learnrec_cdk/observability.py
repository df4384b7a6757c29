"""The dashboard and the alarms of DESIGN.md, with their thresholds from the stage.

Application metrics are CloudWatch EMF from Powertools in namespace ``learnrec`` with a
``service`` dimension (``api``, ``ingest``), and ``model_drift_score`` from the pipeline
(``service=pipeline`` plus ``stage``). Each alarm notifies the stage's alarm topic;
RUNBOOK.md has one section per alarm, under the alarm's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from learnrec.serving.recommender import Fallback

NAMESPACE = "learnrec"
LATENCY = "recommend_request_duration_seconds"
SUCCESS = "recommend_success_total"
SCORE_MEAN = "model_score_mean"
DRIFT = "model_drift_score"
FALLBACKS = tuple(f.value for f in Fallback)  # recommend_fallback_<reason>_total
# CTR inputs: impressions served and clicks that echo a recommendation id.
IMPRESSIONS = "recommendation_impressions_total"
CLICKS = "recommendation_clicks_total"
MINUTE = Duration.minutes(1)


@dataclass(frozen=True)
class Thresholds:
    p95_latency_ms: float
    p95_latency_minutes: int
    error_rate_percent: float
    error_rate_minutes: int
    drift_score: float
    iterator_age_ms: int
    dead_letter_messages: int


def app_metric(
    name: str, service: str, statistic: str = "Sum", period: Duration = MINUTE, **dims: str
) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service, **dims},
        statistic=statistic,
        period=period,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        stage: str,
        thresholds: Thresholds,
        api_name: str,
        api_stage_name: str,
        api_function: lambda_.IFunction,
        ingest_function: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue,
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage = stage
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"learnrec {stage} alarms",
            enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
        )
        t = thresholds

        p95 = app_metric(LATENCY, "api", "p95")
        # Dimensions by name, not by reference to the stage: the canary's deployment group
        # watches this alarm, and a reference would make the API depend on itself.
        gateway = {"ApiName": api_name, "Stage": api_stage_name}
        requests = cw.Metric(
            namespace="AWS/ApiGateway",
            metric_name="Count",
            dimensions_map=gateway,
            statistic="Sum",
            period=MINUTE,
        )
        server_errors = cw.Metric(
            namespace="AWS/ApiGateway",
            metric_name="5XXError",
            dimensions_map=gateway,
            statistic="Sum",
            period=MINUTE,
        )
        error_rate = cw.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"requests": requests, "errors": server_errors},
            label="5xx share of requests (%)",
            period=MINUTE,
        )
        drift = app_metric(DRIFT, "pipeline", "Maximum", Duration.hours(1), stage=stage)
        iterator_age = ingest_function.metric("IteratorAge", statistic="Maximum", period=MINUTE)
        dead_letters = dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=MINUTE, statistic="Maximum"
        )

        self.latency_alarm = self._alarm(
            "LatencyP95",
            p95,
            threshold=t.p95_latency_ms / 1000.0,  # the histogram is in seconds
            minutes=t.p95_latency_minutes,
            description=f"recommend P95 above {t.p95_latency_ms:.0f} ms "
            f"for {t.p95_latency_minutes} minutes",
        )
        self.error_rate_alarm = self._alarm(
            "ErrorRate",
            error_rate,
            threshold=t.error_rate_percent,
            minutes=t.error_rate_minutes,
            description=f"API 5xx above {t.error_rate_percent}% of requests "
            f"for {t.error_rate_minutes} minutes",
        )
        self.drift_alarm = cw.Alarm(
            self,
            "Drift",
            alarm_name=f"learnrec-{stage}-Drift",
            alarm_description=f"model drift score above {t.drift_score} at the last retrain",
            metric=drift,
            threshold=t.drift_score,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.iterator_age_alarm = self._alarm(
            "IngestLag",
            iterator_age,
            threshold=t.iterator_age_ms,
            minutes=5,
            description=f"ingest more than {t.iterator_age_ms / 1000:.0f} s behind the stream",
        )
        self.dead_letter_alarm = cw.Alarm(
            self,
            "DeadLetters",
            alarm_name=f"learnrec-{stage}-DeadLetters",
            alarm_description="events in the dead-letter queue",
            metric=dead_letters,
            threshold=t.dead_letter_messages,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.retrain_failed_alarm = cw.Alarm(
            self,
            "RetrainFailed",
            alarm_name=f"learnrec-{stage}-RetrainFailed",
            alarm_description="a retraining run failed, timed out or was aborted",
            metric=cw.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={
                    "failed": state_machine.metric_failed(period=Duration.hours(1)),
                    "timedout": state_machine.metric_timed_out(period=Duration.hours(1)),
                    "aborted": state_machine.metric_aborted(period=Duration.hours(1)),
                },
                period=Duration.hours(1),
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self._widgets(stage, t, requests, server_errors, error_rate, drift, iterator_age)
        self._more_widgets(api_function, ingest_function, dead_letters)

    @property
    def alarms(self) -> list[cw.Alarm]:
        return [
            self.latency_alarm,
            self.error_rate_alarm,
            self.drift_alarm,
            self.iterator_age_alarm,
            self.dead_letter_alarm,
            self.retrain_failed_alarm,
        ]

    def _alarm(
        self, name: str, metric: cw.IMetric, *, threshold: float, minutes: int, description: str
    ) -> cw.Alarm:
        """Breaching in every one-minute period for ``minutes`` minutes in a row."""
        return cw.Alarm(
            self,
            name,
            alarm_name=f"learnrec-{self.stage}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _widgets(
        self,
        stage: str,
        t: Thresholds,
        requests: cw.IMetric,
        server_errors: cw.IMetric,
        error_rate: cw.IMetric,
        drift: cw.IMetric,
        iterator_age: cw.IMetric,
    ) -> None:
        latency = [app_metric(LATENCY, "api", s) for s in ("p50", "p95", "p99")]
        ctr = cw.MathExpression(
            expression="IF(impressions > 0, 100 * clicks / impressions, 0)",
            using_metrics={
                "impressions": app_metric(IMPRESSIONS, "ingest", period=Duration.hours(1)),
                "clicks": app_metric(CLICKS, "ingest", period=Duration.hours(1)),
            },
            label="CTR (%)",
            period=Duration.hours(1),
        )
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# learnrec {stage}\nRecommend latency (service-side, P95 target "
                f"< 200 ms, alarm > {t.p95_latency_ms:.0f} ms), errors and throughput of "
                "the API; CTR of served recommendations; drift at each retrain; how far "
                "ingestion lags the stream. What to do for each alarm: docs/RUNBOOK.md.",
                width=24,
                height=2,
            ),
            cw.GraphWidget(
                title="Recommend latency P50 / P95 / P99 (s)",
                left=latency,
                left_annotations=[
                    cw.HorizontalAnnotation(value=t.p95_latency_ms / 1000, label="P95 alarm")
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="API 5xx share of requests (%)",
                left=[error_rate],
                left_annotations=[
                    cw.HorizontalAnnotation(value=t.error_rate_percent, label="alarm")
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Throughput: requests, 5xx, successful recommendations (per minute)",
                left=[requests, server_errors, app_metric(SUCCESS, "api")],
                width=12,
            ),
            cw.GraphWidget(
                title="Degraded responses by fallback (per minute)",
                left=[app_metric(f"recommend_fallback_{f}_total", "api") for f in FALLBACKS],
                width=12,
            ),
            cw.GraphWidget(
                title="CTR of recommendations (%, clicks echoing a recommendation id)",
                left=[ctr],
                width=8,
            ),
            cw.GraphWidget(
                title="Model drift score (PSI) per retrain",
                left=[drift],
                left_annotations=[cw.HorizontalAnnotation(value=t.drift_score, label="alarm")],
                width=8,
            ),
            cw.GraphWidget(
                title="Ingest lag: iterator age (ms)",
                left=[iterator_age],
                left_annotations=[cw.HorizontalAnnotation(value=t.iterator_age_ms, label="alarm")],
                width=8,
            ),
        )

    def _more_widgets(
        self,
        api_function: lambda_.IFunction,
        ingest_function: lambda_.IFunction,
        dead_letters: cw.IMetric,
    ) -> None:
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Mean model score of served recommendations",
                left=[app_metric(SCORE_MEAN, "api", "Average", Duration.minutes(5))],
                width=8,
            ),
            cw.GraphWidget(
                title="Events: received, written, duplicates, dead-lettered (per minute)",
                left=[
                    app_metric(name, "ingest")
                    for name in (
                        "events_received",
                        "events_written",
                        "events_duplicate",
                        "events_dead_lettered",
                    )
                ],
                right=[dead_letters],
                width=8,
            ),
            cw.GraphWidget(
                title="Functions: errors and throttles",
                left=[
                    api_function.metric_errors(period=MINUTE),
                    api_function.metric_throttles(period=MINUTE),
                    ingest_function.metric_errors(period=MINUTE),
                ],
                width=8,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24),
        )
