"""Functions and jobs reach Aurora through RDS Proxy, over TLS, with the cluster's secret."""

from __future__ import annotations

import json

from .conftest import Synthesized


def test_the_proxy_fronts_the_cluster_with_tls_and_its_secret(each_stage: Synthesized) -> None:
    (proxy_id, proxy), *others = each_stage.resources("AWS::RDS::DBProxy").items()
    assert not others
    props = proxy["Properties"]
    assert props["DBProxyName"] == each_stage.config.names.database_proxy
    assert props["EngineFamily"] == "POSTGRESQL" and props["RequireTLS"] is True
    (cluster_id,) = each_stage.resources("AWS::RDS::DBCluster")
    (attachment_id, attachment) = next(
        iter(each_stage.resources("AWS::SecretsManager::SecretTargetAttachment").items())
    )
    assert attachment["Properties"]["TargetId"] == {"Ref": cluster_id}
    # The secret the functions read (DATABASE_SECRET_ARN) is the one the proxy logs in with.
    assert [a["SecretArn"] for a in props["Auth"]] == [{"Ref": attachment_id}]
    (target_group,) = each_stage.resources("AWS::RDS::DBProxyTargetGroup").values()
    assert target_group["Properties"]["DBProxyName"] == {"Ref": proxy_id}
    assert target_group["Properties"]["DBClusterIdentifiers"] == [{"Ref": cluster_id}]
    pool = target_group["Properties"]["ConnectionPoolConfigurationInfo"]
    assert pool["MaxConnectionsPercent"] < 100
    assert pool["ConnectionBorrowTimeout"] < 15  # the api function's timeout


def test_only_the_app_security_group_reaches_the_proxy(each_stage: Synthesized) -> None:
    (proxy,) = each_stage.resources("AWS::RDS::DBProxy").values()
    (group,) = proxy["Properties"]["VpcSecurityGroupIds"]
    group_id = group["Fn::GetAtt"][0]
    ingress = [
        r["Properties"]
        for r in each_stage.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert [(r["FromPort"], r["ToPort"]) for r in ingress] == [(5432, 5432)]
    (source,) = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in ingress}
    assert "AppSecurityGroup" in source
    (cluster,) = each_stage.resources("AWS::RDS::DBCluster").values()
    cluster_groups = [g["Fn::GetAtt"][0] for g in cluster["Properties"]["VpcSecurityGroupIds"]]
    admitted = {
        r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
        for r in each_stage.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0] in cluster_groups
    }
    assert group_id in admitted


def test_functions_and_jobs_connect_to_the_proxy_endpoint(each_stage: Synthesized) -> None:
    (proxy_id,) = each_stage.resources("AWS::RDS::DBProxy")
    endpoint = {"Fn::GetAtt": [proxy_id, "Endpoint"]}
    names = each_stage.config.names
    functions = {
        f["Properties"].get("FunctionName"): f["Properties"]
        for f in each_stage.resources("AWS::Lambda::Function").values()
    }
    for name in (
        names.api_function,
        names.ingest_function,
        names.pipeline_function,
        names.maintenance_function,
    ):
        env = functions[name]["Environment"]["Variables"]
        assert env["DATABASE_HOST"] == endpoint, name
        assert env["DATABASE_SECRET_ARN"]
    (machine,) = each_stage.resources("AWS::StepFunctions::StateMachine").values()
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    # The jobs' environment is in the SageMaker requests the state machine sends.
    assert (
        '\\"DATABASE_HOST\\":\\"", {"Fn::GetAtt": ["' + proxy_id + '", "Endpoint"]}' in definition
    )
