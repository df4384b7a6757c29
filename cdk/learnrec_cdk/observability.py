"""The dashboard and the alarms, with their thresholds from the stage.

Application metrics are CloudWatch EMF from Powertools in namespace ``learnrec`` with a
``service`` dimension (``api``, ``ingest``), and ``model_drift_score`` from the pipeline
(``service=pipeline`` plus ``stage``). The api function publishes each of its metrics a
second time with ``function_version`` added (:mod:`learnrec.serving.telemetry`): the
canary alarms watch the version being deployed, by its number, so a rollback is decided
on the new code's own 5xx and fallback rates, not on a mix diluted by the old version.
Each alarm notifies the stage's alarm topic; RUNBOOK.md has one section per alarm, under
the alarm's name (tests/cdk/test_observability.py checks that none is missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from learnrec.metric_names import (
    API,
    CLICKS,
    DRIFT,
    ERASURE_INCOMPLETE,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_RECEIVED,
    EVENTS_WRITTEN,
    FALLBACKS,
    IMPRESSIONS,
    INGEST,
    LATENCY,
    MAINTENANCE,
    NAMESPACE,
    PIPELINE,
    RESPONSES,
    SCORE_MEAN,
    SERVICE_DIMENSION,
    STATUS_CLASSES,
    SUCCESS,
    VERSION_DIMENSION,
    fallback_metric,
    status_class_metric,
)
from learnrec.stages import Alarms

MINUTE = Duration.minutes(1)
# The thresholds come from the stage (learnrec.stages.Alarms), passed in by the stack.
Thresholds = Alarms


def app_metric(
    name: str,
    service: str,
    statistic: str = "Sum",
    period: Duration = MINUTE,
    dimensions: Mapping[str, str] | None = None,
    **dims: str,
) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={SERVICE_DIMENSION: service, **(dimensions or {}), **dims},
        statistic=statistic,
        period=period,
    )


def fallback_share(
    responses: cw.IMetric, fallbacks: Sequence[cw.IMetric], min_responses: int, label: str
) -> cw.MathExpression:
    """Fallback responses as % of recommend responses; 0 below ``min_responses``.

    A fallback metric has no datapoint in a minute without fallbacks, hence FILL.
    """
    names = [f"f{i}" for i in range(len(fallbacks))]
    total = " + ".join(f"FILL({n}, 0)" for n in names)
    return cw.MathExpression(
        expression=f"IF(responses >= {min_responses}, 100 * ({total}) / responses, 0)",
        using_metrics={"responses": responses, **dict(zip(names, fallbacks, strict=True))},
        label=label,
        period=MINUTE,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        stage: str,
        thresholds: Alarms,
        api_name: str,
        api_stage_name: str,
        api_function: lambda_.IFunction,
        api_version: lambda_.IVersion,
        throttled_requests: cw.IMetric,
        ingest_function: lambda_.IFunction,
        pipeline_function: lambda_.IFunction,
        maintenance_function: lambda_.IFunction,
        maintenance_hours: int,
        dead_letter_queue: sqs.IQueue,
        state_machine: sfn.IStateMachine,
        search_domain: opensearch.IDomain,
        search_replicas: bool,
        database: rds.DatabaseCluster,
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

        p95 = app_metric(LATENCY, API, "p95")
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
        fallback_rate = fallback_share(
            app_metric(SUCCESS, API),
            [app_metric(fallback_metric(f), API) for f in FALLBACKS],
            1,
            "fallback share of recommend responses (%)",
        )
        drift = app_metric(DRIFT, PIPELINE, "Maximum", Duration.hours(1), stage=stage)
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
        self.fallback_rate_alarm = self._alarm(
            "FallbackRate",
            fallback_rate,
            threshold=t.fallback_rate_percent,
            minutes=t.fallback_rate_minutes,
            description=f"more than {t.fallback_rate_percent}% of recommendations served by a "
            f"fallback (popularity, retrieval order) for {t.fallback_rate_minutes} minutes",
        )
        self._canary_alarms(api_version, t)
        self.drift_alarm = self._alarm(
            "Drift",
            drift,
            threshold=t.drift_score,
            minutes=1,
            description=f"model drift score above {t.drift_score} at the last retrain",
        )
        self.iterator_age_alarm = self._alarm(
            "IngestLag",
            iterator_age,
            threshold=t.iterator_age_ms,
            minutes=5,
            description=f"ingest more than {t.iterator_age_ms / 1000:.0f} s behind the stream",
        )
        self.dead_letter_alarm = self._alarm(
            "DeadLetters",
            dead_letters,
            threshold=t.dead_letter_messages,
            minutes=1,
            description="events in the dead-letter queue",
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        self.retrain_failed_alarm = self._alarm(
            "RetrainFailed",
            cw.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={
                    "failed": state_machine.metric_failed(period=Duration.hours(1)),
                    "timedout": state_machine.metric_timed_out(period=Duration.hours(1)),
                    "aborted": state_machine.metric_aborted(period=Duration.hours(1)),
                },
                period=Duration.hours(1),
            ),
            threshold=1,
            minutes=1,  # one period, of an hour
            description="a retraining run failed, timed out or was aborted",
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        # Two maintenance runs in a row that failed or were cut short: an erasure is at
        # risk of missing its 24-hour bound (docs/RUNBOOK.md, "Erasure and opt-out").
        every_run = Duration.hours(maintenance_hours)
        self.maintenance_failed_alarm = self._alarm(
            "MaintenanceFailed",
            cw.MathExpression(
                expression="FILL(errors, 0) + FILL(incomplete, 0)",
                using_metrics={
                    "errors": maintenance_function.metric_errors(period=every_run),
                    "incomplete": app_metric(ERASURE_INCOMPLETE, MAINTENANCE, "Maximum", every_run),
                },
                period=every_run,
            ),
            threshold=1,
            minutes=2,  # two periods, each one run
            description="two maintenance runs in a row failed or did not finish the erasure sweep",
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        functions = {
            "api": api_function,
            "ingest": ingest_function,
            "pipeline": pipeline_function,
            "maintenance": maintenance_function,
        }
        throttles = self._throttle_alarms(functions, throttled_requests, t)
        search = self._search_alarms(search_domain, search_replicas, t)
        aurora = self._database_alarms(database, t)
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self._widgets(stage, t, requests, server_errors, error_rate, drift, iterator_age)
        self._more_widgets(api_function, ingest_function, dead_letters)
        self._health_widgets(t, fallback_rate, throttles, search, aurora)

    @property
    def alarms(self) -> list[cw.Alarm]:
        return [
            self.latency_alarm,
            self.error_rate_alarm,
            self.fallback_rate_alarm,
            self.canary_error_rate_alarm,
            self.canary_fallback_rate_alarm,
            self.drift_alarm,
            self.iterator_age_alarm,
            self.dead_letter_alarm,
            self.retrain_failed_alarm,
            self.maintenance_failed_alarm,
            self.function_throttles_alarm,
            self.api_throttled_alarm,
            *self.search_alarms,
            *self.database_alarms,
        ]

    @property
    def canary_alarms(self) -> list[cw.Alarm]:
        """The alarms a deployment of the api function rolls back on, besides its errors."""
        return [
            self.latency_alarm,
            self.error_rate_alarm,
            self.canary_error_rate_alarm,
            self.canary_fallback_rate_alarm,
        ]

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        minutes: int,
        description: str,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    ) -> cw.Alarm:
        """Breaching in every period of ``metric`` (one minute unless it says otherwise)
        for ``minutes`` periods in a row."""
        return cw.Alarm(
            self,
            name,
            alarm_name=f"learnrec-{self.stage}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            comparison_operator=comparison,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _canary_alarms(self, version: lambda_.IVersion, t: Alarms) -> None:
        """5xx and fallback shares of the responses of ``version`` alone.

        ``version.version`` is the number CloudFormation assigns when it publishes the
        version, the value Lambda puts in AWS_LAMBDA_FUNCTION_VERSION: each deployment
        points these alarms at the version it brings in.
        """
        dims = {VERSION_DIMENSION: version.version}
        responses = app_metric(RESPONSES, API, dimensions=dims)
        server_errors = app_metric(status_class_metric("5xx"), API, dimensions=dims)
        self.canary_error_rate_alarm = self._alarm(
            "CanaryErrorRate",
            cw.MathExpression(
                expression=f"IF(responses >= {t.canary_min_responses}, "
                "100 * FILL(errors, 0) / responses, 0)",
                using_metrics={"responses": responses, "errors": server_errors},
                label="5xx share of the deployed version's responses (%)",
                period=MINUTE,
            ),
            threshold=t.canary_error_rate_percent,
            minutes=t.canary_minutes,
            description=f"the api version being deployed answers more than "
            f"{t.canary_error_rate_percent}% 5xx for {t.canary_minutes} minutes",
        )
        self.canary_fallback_rate_alarm = self._alarm(
            "CanaryFallbackRate",
            fallback_share(
                app_metric(SUCCESS, API, dimensions=dims),
                [app_metric(fallback_metric(f), API, dimensions=dims) for f in FALLBACKS],
                t.canary_min_responses,
                "fallback share of the deployed version's recommendations (%)",
            ),
            threshold=t.canary_fallback_rate_percent,
            minutes=t.canary_minutes,
            description=f"the api version being deployed serves more than "
            f"{t.canary_fallback_rate_percent}% of recommendations by a fallback "
            f"for {t.canary_minutes} minutes",
        )

    def _throttle_alarms(
        self,
        functions: dict[str, lambda_.IFunction],
        throttled_requests: cw.IMetric,
        t: Alarms,
    ) -> tuple[cw.IMetric, cw.IMetric]:
        invocations = {name: f.metric_throttles(period=MINUTE) for name, f in functions.items()}
        function_throttles = cw.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in invocations),
            using_metrics=invocations,
            label="throttled invocations (api + ingest + pipeline)",
            period=MINUTE,
        )
        self.function_throttles_alarm = self._alarm(
            "FunctionThrottles",
            function_throttles,
            threshold=t.function_throttles,
            minutes=t.throttle_minutes,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description=f"at least {t.function_throttles} throttled invocations per minute of "
            f"the api, ingest or pipeline function for {t.throttle_minutes} minutes",
        )
        self.api_throttled_alarm = self._alarm(
            "ApiThrottled",
            throttled_requests,
            threshold=t.throttled_requests,
            minutes=t.throttle_minutes,
            comparison=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description=f"API Gateway answered at least {t.throttled_requests} requests per "
            f"minute with 429 (stage throttling) for {t.throttle_minutes} minutes",
        )
        return function_throttles, throttled_requests

    def _search_alarms(
        self, domain: opensearch.IDomain, replicas: bool, t: Alarms
    ) -> tuple[list[cw.IMetric], cw.IMetric]:
        """Cluster health and JVM pressure (AWS/ES, DomainName + ClientId).

        Yellow (unassigned replicas) only where replicas can be assigned: a single-node
        domain is yellow for good as soon as an index asks for a replica.
        """
        red = domain.metric_cluster_status_red(period=MINUTE, statistic="Maximum")
        blocked = domain.metric_cluster_index_writes_blocked(period=MINUTE, statistic="Maximum")
        jvm = domain.metric_jvm_memory_pressure(period=MINUTE, statistic="Maximum")
        at_least_one = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        self.search_alarms = [
            self._alarm(
                "SearchRed",
                red,
                threshold=1,
                minutes=1,
                comparison=at_least_one,
                description="OpenSearch cluster red: a primary shard is unassigned, queries of "
                "its index fail and recommendations fall back to popularity",
            ),
            self._alarm(
                "SearchWritesBlocked",
                blocked,
                threshold=1,
                minutes=5,
                comparison=at_least_one,
                description="OpenSearch blocks index writes (disk or memory pressure): the "
                "pipeline cannot build the next index",
            ),
            self._alarm(
                "SearchJvmPressure",
                jvm,
                threshold=t.jvm_memory_pressure_percent,
                minutes=t.jvm_memory_pressure_minutes,
                description=f"OpenSearch JVM memory pressure above "
                f"{t.jvm_memory_pressure_percent:.0f}% for {t.jvm_memory_pressure_minutes} minutes",
            ),
        ]
        health: list[cw.IMetric] = [red, blocked]
        if replicas:
            yellow = domain.metric_cluster_status_yellow(period=MINUTE, statistic="Maximum")
            self.search_alarms.append(
                self._alarm(
                    "SearchYellow",
                    yellow,
                    threshold=1,
                    minutes=t.search_yellow_minutes,
                    comparison=at_least_one,
                    description="OpenSearch cluster yellow: replica shards unassigned for "
                    f"{t.search_yellow_minutes} minutes (one node lost or out of disk)",
                )
            )
            health.append(yellow)
        return health, jvm

    def _database_alarms(self, database: rds.DatabaseCluster, t: Alarms) -> list[cw.IMetric]:
        cpu = database.metric_cpu_utilization(period=MINUTE, statistic="Average")
        capacity = database.metric_acu_utilization(period=MINUTE, statistic="Maximum")
        connections = database.metric_database_connections(period=MINUTE, statistic="Maximum")
        minutes = t.aurora_minutes
        self.database_alarms = [
            self._alarm(
                "AuroraCpu",
                cpu,
                threshold=t.aurora_cpu_percent,
                minutes=minutes,
                description=f"Aurora CPU above {t.aurora_cpu_percent:.0f}% for {minutes} minutes",
            ),
            self._alarm(
                "AuroraCapacity",
                capacity,
                threshold=t.aurora_capacity_percent_of_max,
                minutes=minutes,
                description=f"Aurora above {t.aurora_capacity_percent_of_max:.0f}% of its "
                f"maximum ACU for {minutes} minutes: it cannot scale much further",
            ),
            self._alarm(
                "AuroraConnections",
                connections,
                threshold=t.aurora_connections,
                minutes=minutes,
                description=f"more than {t.aurora_connections} database connections on Aurora "
                f"for {minutes} minutes",
            ),
        ]
        return [cpu, capacity, connections]

    def _widgets(
        self,
        stage: str,
        t: Alarms,
        requests: cw.IMetric,
        server_errors: cw.IMetric,
        error_rate: cw.IMetric,
        drift: cw.IMetric,
        iterator_age: cw.IMetric,
    ) -> None:
        latency = [app_metric(LATENCY, API, s) for s in ("p50", "p95", "p99")]
        ctr = cw.MathExpression(
            expression="IF(impressions > 0, 100 * clicks / impressions, 0)",
            using_metrics={
                "impressions": app_metric(IMPRESSIONS, INGEST, period=Duration.hours(1)),
                "clicks": app_metric(CLICKS, INGEST, period=Duration.hours(1)),
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
                left=[requests, server_errors, app_metric(SUCCESS, API)],
                width=12,
            ),
            cw.GraphWidget(
                title="Degraded responses by fallback (per minute)",
                left=[app_metric(fallback_metric(f), API) for f in FALLBACKS],
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
                left=[app_metric(SCORE_MEAN, API, "Average", Duration.minutes(5))],
                width=8,
            ),
            cw.GraphWidget(
                title="Events: received, written, duplicates, dead-lettered (per minute)",
                left=[
                    app_metric(name, INGEST)
                    for name in (
                        EVENTS_RECEIVED,
                        EVENTS_WRITTEN,
                        EVENTS_DUPLICATE,
                        EVENTS_DEAD_LETTERED,
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

    def _health_widgets(
        self,
        t: Alarms,
        fallback_rate: cw.IMetric,
        throttles: tuple[cw.IMetric, cw.IMetric],
        search: tuple[Sequence[cw.IMetric], cw.IMetric],
        aurora: Sequence[cw.IMetric],
    ) -> None:
        """The newer alarms' signals, each with its threshold, and the api per version."""
        cpu, capacity, connections = aurora
        # One line per version that answered 5xx: SEARCH finds the versions as they come.
        schema = f"{NAMESPACE},{SERVICE_DIMENSION},{VERSION_DIMENSION}"
        search_expression = (
            f'SEARCH(\'{{{schema}}} {SERVICE_DIMENSION}="{API}" '
            f"MetricName=\"{status_class_metric('5xx')}\"', 'Sum', 60)"
        )
        per_version = [
            cw.MathExpression(expression=search_expression, label="5xx by version", period=MINUTE)
        ]
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Fallback share of recommendations (%)",
                left=[fallback_rate],
                left_annotations=[
                    cw.HorizontalAnnotation(value=t.fallback_rate_percent, label="alarm")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="API responses by status class; 5xx per function version",
                left=[app_metric(status_class_metric(c), API) for c in STATUS_CLASSES],
                right=per_version,
                width=8,
            ),
            cw.GraphWidget(
                title="Throttles: function invocations, API 429s (per minute)",
                left=[throttles[0]],
                right=[throttles[1]],
                left_annotations=[
                    cw.HorizontalAnnotation(value=t.function_throttles, label="functions alarm")
                ],
                right_annotations=[
                    cw.HorizontalAnnotation(value=t.throttled_requests, label="429 alarm")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="OpenSearch: cluster red / writes blocked (/ yellow); JVM pressure (%)",
                left=list(search[0]),
                right=[search[1]],
                right_annotations=[
                    cw.HorizontalAnnotation(
                        value=t.jvm_memory_pressure_percent, label="JVM pressure alarm"
                    )
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Aurora: CPU and ACU utilization (%), connections",
                left=[cpu, capacity],
                right=[connections],
                left_annotations=[
                    cw.HorizontalAnnotation(value=t.aurora_cpu_percent, label="CPU alarm"),
                    cw.HorizontalAnnotation(
                        value=t.aurora_capacity_percent_of_max, label="capacity alarm"
                    ),
                ],
                right_annotations=[
                    cw.HorizontalAnnotation(value=t.aurora_connections, label="connections alarm")
                ],
                width=12,
            ),
        )
