"""The recommend path's front: API Gateway REST -> the ``live`` alias of the api Lambda.

Resources and methods come from the app's OpenAPI spec (:func:`learnrec.serving.
openapi_doc.gateway_routes`), so the gateway rejects unknown routes, missing path
parameters and non-JSON bodies before a function runs, and answers in the app's error
shape (``{"error", "detail"}``). New versions reach ``live`` through CodeDeploy: a
canary share of traffic for a few minutes, rolled back automatically on alarm.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from learnrec.metric_names import THROTTLED_NAMESPACE, throttled_metric
from learnrec.serving.openapi_doc import Route
from learnrec.stages import StageConfig

from .functions import FunctionPlatform
from .nag import acknowledge

# Error bodies API Gateway itself returns, in the app's shape.
_ERROR_TEMPLATE = '{"error": "%s", "detail": $context.error.messageString}'
_VALIDATION_TEMPLATE = (
    '{"error": "invalid_request", "detail": "$context.error.validationErrorString"}'
)
GATEWAY_RESPONSES: dict[apigw.ResponseType, tuple[str, str]] = {
    # An unknown route surfaces as "missing authentication token" by default.
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("404", _ERROR_TEMPLATE % "not_found"),
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", _VALIDATION_TEMPLATE),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", _VALIDATION_TEMPLATE),
    apigw.ResponseType.THROTTLED: ("429", _ERROR_TEMPLATE % "throttled"),
    apigw.ResponseType.DEFAULT_4_XX: ("", _ERROR_TEMPLATE % "bad_request"),
    apigw.ResponseType.DEFAULT_5_XX: ("", _ERROR_TEMPLATE % "unavailable"),
}
# The largest POST /events batch (500 events) is well above the managed rule set's
# 8 KB body limit, so that one rule only counts; the function validates bodies itself.
WAF_COUNT_ONLY = ("SizeRestrictions_BODY",)


class Serving(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        config: StageConfig,
        routes: Sequence[Route],
    ) -> None:
        super().__init__(scope, construct_id)
        function_name, stage_name = config.names.api_function, config.stage
        self.api_function = platform.function(
            self,
            "Api",
            package="api",
            function_name=function_name,
            description="learnrec HTTP API (FastAPI via Mangum)",
            memory_mb=config.api_memory_mb,
            timeout=Duration.seconds(15),
            # Model bundles are fetched to /tmp once per container.
            ephemeral_storage_mb=2048,
            environment=platform.environment("api"),
        )
        self.function = self.api_function.function
        self.role = self.api_function.role
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name="live",
            version=self.function.current_version,
            provisioned_concurrent_executions=config.provisioned_concurrency or None,
        )
        self.version = self.function.current_version
        # A new version that throws during its canary share rolls back at once.
        self.canary_errors_alarm = cloudwatch.Alarm(
            self,
            "CanaryErrors",
            alarm_name=f"learnrec-{stage_name}-CanaryErrors",
            alarm_description="api function errors on the live alias (canary rollback)",
            metric=self.alias.metric_errors(period=Duration.minutes(1)),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        canary = codedeploy.LambdaDeploymentConfig(
            self,
            "Canary",
            traffic_routing=codedeploy.TimeBasedCanaryTrafficRouting(
                interval=Duration.minutes(config.canary_minutes),
                percentage=config.canary_percent,
            ),
        )
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "Deployment",
            alias=self.alias,
            deployment_config=canary,
            alarms=[self.canary_errors_alarm],
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        # CodeDeploy's own service role for Lambda deployments, as AWS documents it.
        acknowledge(
            self.deployment_group,
            "IAM4",
            "AWSCodeDeployRoleForLambdaLimited is the documented CodeDeploy role",
            [
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited"
            ],
        )
        self.api = self._rest_api(
            function_name,
            stage_name,
            routes,
            config.api_throttle_rate,
            config.api_throttle_burst,
            platform,
        )
        self._firewall()

    def roll_back_on(self, *alarms: cloudwatch.IAlarm) -> None:
        """Roll a deployment back when one of ``alarms`` fires during its canary.

        The alias waits for the alarms: an alarm that watches the new version by number is
        updated to that number before CodeDeploy starts shifting traffic to it.
        """
        for alarm in alarms:
            self.deployment_group.add_alarm(alarm)
            self.alias.node.add_dependency(alarm)

    def _rest_api(
        self,
        function_name: str,
        stage_name: str,
        routes: Sequence[Route],
        throttle_rate: float,
        throttle_burst: int,
        platform: FunctionPlatform,
    ) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=platform.log_retention,
            removal_policy=platform.removal_policy,
        )
        # API Gateway has no metric of its own for 429s (they are inside 4XXError): count
        # them from the access log, whose "status" field is the status the caller got.
        throttled = logs.MetricFilter(
            self,
            "ThrottledRequests",
            log_group=access_logs,
            filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
            metric_namespace=THROTTLED_NAMESPACE,
            metric_name=throttled_metric(function_name),
            metric_value="1",
            default_value=0,
        )
        self.throttled_requests = throttled.metric(statistic="Sum", period=Duration.minutes(1))
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=function_name,
            description="learnrec recommendations API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=platform.removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
                # API Gateway's trace segment records the request URL, and the routes
                # carry the learner's raw id in the path: the stage is not traced; the
                # api function is (from the moment it is invoked, with no raw id).
                tracing_enabled=False,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry learner ids: never log them
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=False,  # learners' addresses are personal data; not needed here
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        validator = api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        json_body = api.add_model(
            "JsonBody",
            content_type="application/json",
            description="a JSON object or array; fields are validated by the function",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=[apigw.JsonSchemaType.OBJECT, apigw.JsonSchemaType.ARRAY],
            ),
        )
        integration = apigw.LambdaIntegration(self.alias, proxy=True, allow_test_invoke=False)
        for route in routes:
            parameters = {f"method.request.path.{name}": True for name in route.path_params}
            parameters |= {f"method.request.querystring.{n}": True for n in route.required_query}
            api.root.resource_for_path(route.path).add_method(
                route.method,
                integration,
                request_validator=validator,
                request_parameters=parameters or None,
                request_models={"application/json": json_body} if route.has_body else None,
            )
        for response_type, (status, template) in GATEWAY_RESPONSES.items():
            api.add_gateway_response(
                f"Response{response_type.response_type}",
                type=response_type,
                status_code=status or None,
                templates={"application/json": template},
            )
        # Authentication is RS256 bearer tokens verified by the function itself
        # (learnrec.serving.auth), with per-route RBAC; /health is public on purpose.
        acknowledge(api, "APIG4", "bearer tokens are verified by the app (RS256, RBAC)")
        acknowledge(api, "COG4", "bearer tokens are verified by the app (RS256, RBAC)")
        # API Gateway's account-level logging role, as AWS documents it.
        acknowledge(
            api,
            "IAM4",
            "AmazonAPIGatewayPushToCloudWatchLogs is the documented logging role",
            [
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
            ],
        )
        return api

    def _firewall(self) -> None:
        """AWS managed rules in front of the stage: common exploits and bad inputs."""
        rules = []
        for priority, (name, count_only) in enumerate(
            [
                ("AWSManagedRulesCommonRuleSet", WAF_COUNT_ONLY),
                ("AWSManagedRulesKnownBadInputsRuleSet", ()),
            ]
        ):
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=name,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS",
                            name=name,
                            rule_action_overrides=[
                                wafv2.CfnWebACL.RuleActionOverrideProperty(
                                    name=rule,
                                    action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                                )
                                for rule in count_only
                            ]
                            or None,
                        )
                    ),
                    visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                        cloud_watch_metrics_enabled=True,
                        metric_name=name,
                        sampled_requests_enabled=True,
                    ),
                )
            )
        acl = wafv2.CfnWebACL(
            self,
            "Firewall",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            rules=rules,
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True,
                metric_name="learnrec-api",
                sampled_requests_enabled=True,
            ),
        )
        wafv2.CfnWebACLAssociation(
            self,
            "FirewallAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )

    @property
    def url(self) -> str:
        return self.api.url
