"""The recommend path's front door: throttling, validation, canary, functions."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template

from learnrec.serving.openapi_doc import gateway_routes, openapi_spec
from learnrec_dev.packaging import FUNCTIONS

from .conftest import Synthesized


def test_stage_throttles_and_logs_without_bodies(each_stage: Synthesized) -> None:
    config = each_stage.config
    stage = next(iter(each_stage.resources("AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["StageName"] == each_stage.stage
    settings = stage["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == config.api_throttle_rate
    assert settings["ThrottlingBurstLimit"] == config.api_throttle_burst
    assert settings["DataTraceEnabled"] is False
    # The stage's trace segment would record the URL, whose path holds the raw user id.
    assert stage.get("TracingEnabled", False) is False
    assert stage["AccessLogSetting"]["DestinationArn"]


def test_every_route_of_the_app_is_validated(prod: Synthesized) -> None:
    (alias_id,) = prod.resources("AWS::Lambda::Alias")
    validators = prod.resources("AWS::ApiGateway::RequestValidator")
    assert len(validators) == 1
    validator_id, validator = next(iter(validators.items()))
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    methods = prod.resources("AWS::ApiGateway::Method").values()
    routes = gateway_routes(openapi_spec())
    assert len(methods) == len(routes)
    assert {m["Properties"]["HttpMethod"] for m in methods} == {r.method for r in routes}
    for method in methods:
        props = method["Properties"]
        assert props["RequestValidatorId"] == {"Ref": validator_id}
        assert props["Integration"]["Type"] == "AWS_PROXY"
        # The integration targets the live alias (canary), not $LATEST.
        assert {"Ref": alias_id} in props["Integration"]["Uri"]["Fn::Join"][1]
    recommend = [
        m
        for m in methods
        if "method.request.path.user_id" in m["Properties"].get("RequestParameters", {})
    ]
    assert recommend
    with_body = [m for m in methods if m["Properties"].get("RequestModels")]
    assert len(with_body) == sum(r.has_body for r in routes)


def test_gateway_errors_have_the_app_shape(prod: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in prod.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    assert "validationErrorString" in str(responses["BAD_REQUEST_BODY"]["ResponseTemplates"])
    assert '"error"' in responses["DEFAULT_5XX"]["ResponseTemplates"]["application/json"]


def test_canary_deployment_rolls_back_on_alarm(each_stage: Synthesized) -> None:
    config = each_stage.config
    template = Template.from_json(each_stage.template)
    template.has_resource_properties(
        "AWS::CodeDeploy::DeploymentConfig",
        {
            "ComputePlatform": "Lambda",
            "TrafficRoutingConfig": {
                "Type": "TimeBasedCanary",
                "TimeBasedCanary": {
                    "CanaryPercentage": config.canary_percent,
                    "CanaryInterval": config.canary_minutes,
                },
            },
        },
    )
    group = next(iter(each_stage.resources("AWS::CodeDeploy::DeploymentGroup").values()))
    props = group["Properties"]
    assert set(props["AutoRollbackConfiguration"]["Events"]) >= {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
    }
    assert props["AlarmConfiguration"]["Enabled"] is True
    alarms = each_stage.resources("AWS::CloudWatch::Alarm")
    watched = {
        alarms[a["Name"]["Ref"]]["Properties"]["AlarmName"]: a["Name"]["Ref"]
        for a in props["AlarmConfiguration"]["Alarms"]
    }
    prefix = f"learnrec-{each_stage.stage}-"
    assert set(watched) == {
        prefix + name
        for name in (
            "CanaryErrors",
            "LatencyP95",
            "ErrorRate",
            "CanaryErrorRate",
            "CanaryFallbackRate",
        )
    }
    (alias,) = each_stage.resources("AWS::Lambda::Alias").values()
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    # The version the alias is moved to: its number is what the function reports in
    # AWS_LAMBDA_FUNCTION_VERSION, and what the canary alarms watch.
    version = alias["Properties"]["FunctionVersion"]
    (version_id, _) = version["Fn::GetAtt"]
    assert each_stage.template["Resources"][version_id]["Type"] == "AWS::Lambda::Version"
    for name in ("CanaryErrorRate", "CanaryFallbackRate"):
        logical_id = watched[prefix + name]
        metrics = [
            m["MetricStat"]["Metric"]
            for m in alarms[logical_id]["Properties"]["Metrics"]
            if "MetricStat" in m
        ]
        assert metrics
        for metric in metrics:
            assert metric["Namespace"] == "learnrec"
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            assert dimensions == {"service": "api", "function_version": version}
        # Pointed at the new version before CodeDeploy shifts traffic to it.
        assert logical_id in alias["DependsOn"]
    error_rate = alarms[watched[prefix + "CanaryErrorRate"]]["Properties"]
    names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in error_rate["Metrics"] if "MetricStat" in m
    }
    assert names == {"http_responses_total", "http_responses_5xx_total"}
    assert error_rate["Threshold"] == config.alarms.canary_error_rate_percent
    fallback = alarms[watched[prefix + "CanaryFallbackRate"]]["Properties"]
    names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in fallback["Metrics"] if "MetricStat" in m
    }
    assert names == {
        "recommend_success_total",
        "recommend_fallback_popularity_total",
        "recommend_fallback_retrieval_order_total",
        "recommend_fallback_exact_retrieval_total",
    }
    assert fallback["Threshold"] == config.alarms.canary_fallback_rate_percent
    assert fallback["EvaluationPeriods"] == config.alarms.canary_minutes
    assert config.alarms.canary_minutes < config.canary_minutes  # fires inside the window


def test_provisioned_concurrency_only_where_configured(each_stage: Synthesized) -> None:
    config = each_stage.config
    alias = next(iter(each_stage.resources("AWS::Lambda::Alias").values()))["Properties"]
    provisioned = alias.get("ProvisionedConcurrencyConfig", {})
    assert provisioned.get("ProvisionedConcurrentExecutions", 0) == config.provisioned_concurrency


def test_functions_run_python312_in_the_vpc_with_settings(prod: Synthesized) -> None:
    names = prod.config.names
    functions = {
        f["Properties"].get("FunctionName"): f["Properties"]
        for f in prod.resources("AWS::Lambda::Function").values()
    }
    for name in (
        names.api_function,
        names.ingest_function,
        names.pipeline_function,
        names.maintenance_function,
    ):
        props = functions[name]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        assert props["Handler"] == "handler.handler"
        assert props["VpcConfig"]["SubnetIds"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "learnrec"
        assert env["MODEL_STORE"] == names.model_store_url
        assert env["DATABASE_SECRET_ARN"] and env["USER_ID_HASH_SECRET_ID"]
        assert "DATABASE_URL" not in env  # built from the secret, never in plain text
    api = functions[names.api_function]["Environment"]["Variables"]
    assert api["JWT_ISSUER"] == prod.config.token_issuer
    assert api["JWT_AUDIENCE"] == prod.config.token_audience == "learnrec-prod-api"
    assert api["VECTOR_INDEX"] == "opensearch"
    assert api["OPENSEARCH_ENDPOINT"] and api["JWT_SECRET_ID"]
    assert api["KINESIS_STREAM_NAME"] == names.events_stream
    assert functions[names.ingest_function]["Environment"]["Variables"]["DEAD_LETTER_QUEUE_URL"]
    for name, spec in FUNCTIONS.items():
        built = functions[getattr(names, f"{name}_function")]
        assert len(built["Layers"]) == len(spec.layers), name


def test_ingest_event_source_batches_bisects_and_dead_letters(each_stage: Synthesized) -> None:
    config = each_stage.config
    Template.from_json(each_stage.template).has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": config.ingest_batch_size,
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumBatchingWindowInSeconds": Match.any_value(),
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
            "StartingPosition": "TRIM_HORIZON",
        },
    )


def test_api_has_a_firewall(prod: Synthesized) -> None:
    template = Template.from_json(prod.template)
    template.resource_count_is("AWS::WAFv2::WebACL", 1)
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
