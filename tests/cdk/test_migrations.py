"""The deploy-time schema migration in the synthesized template."""

from __future__ import annotations

import json
from typing import Any

from learnrec.storage.migrate import scripts_digest
from learnrec.storage.schema import HEAD

from .conftest import Synthesized
from .test_least_privilege import _listify, role_statements


def _logical_id(synth: Synthesized, kind: str, **properties: Any) -> str:
    (found,) = [
        key
        for key, resource in synth.resources(kind).items()
        if all(resource["Properties"].get(k) == v for k, v in properties.items())
    ]
    return found


def _schema(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    ((key, resource),) = synth.resources("Custom::LearnrecSchema").items()
    return key, resource


def _depends_on(resource: dict[str, Any]) -> set[str]:
    return set(_listify(resource.get("DependsOn", [])))


def test_migration_runs_with_the_scripts_digest(each_stage: Synthesized) -> None:
    _, schema = _schema(each_stage)
    props = schema["Properties"]
    # A changed (or added) script changes the digest (tests/unit/test_migrations.py), so
    # CloudFormation updates the resource and the migration runs again.
    assert props["MigrationsDigest"] == scripts_digest()
    assert props["Revision"] == HEAD
    assert schema.get("DeletionPolicy", "Delete") == "Delete"  # Delete keeps the data
    # The provider framework's function answers CloudFormation and invokes ours.
    token = props["ServiceToken"]["Fn::GetAtt"][0]
    framework = each_stage.template["Resources"][token]["Properties"]
    names = each_stage.config.names
    assert framework["FunctionName"] == f"{names.migrate_function}-provider"
    assert framework["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]


def test_migration_function_runs_in_the_vpc_with_the_database_secret(
    prod: Synthesized,
) -> None:
    names = prod.config.names
    functions = {
        f["Properties"]["FunctionName"]: (key, f["Properties"])
        for key, f in prod.resources("AWS::Lambda::Function").items()
        if isinstance(f["Properties"].get("FunctionName"), str)
    }
    _, migrate = functions[names.migrate_function]
    _, api = functions[names.api_function]
    assert migrate["VpcConfig"] == api["VpcConfig"]  # app subnets, the app security group
    secret = migrate["Environment"]["Variables"]["DATABASE_SECRET_ARN"]
    assert secret == api["Environment"]["Variables"]["DATABASE_SECRET_ARN"]
    assert "DATABASE_URL" not in migrate["Environment"]["Variables"]
    assert len(migrate["Layers"]) == 3  # base, db, migrations (learnrec_dev.packaging)
    reads = [
        s["Resource"]
        for s in role_statements(prod, "MigrationsMigrateRole")
        if "secretsmanager:GetSecretValue" in _listify(s["Action"])
    ]
    assert reads == [secret]


def test_database_first_then_migration_then_functions(each_stage: Synthesized) -> None:
    key, schema = _schema(each_stage)
    resources = each_stage.template["Resources"]
    database = {
        k
        for k, r in resources.items()
        if r["Type"] in ("AWS::RDS::DBCluster", "AWS::RDS::DBInstance")
    }
    assert database and database <= _depends_on(schema)
    names = each_stage.config.names
    for name in (
        names.api_function,
        names.ingest_function,
        names.pipeline_function,
        names.maintenance_function,
    ):
        function = _logical_id(each_stage, "AWS::Lambda::Function", FunctionName=name)
        assert key in _depends_on(resources[function]), name
    # ... and so their published versions (the API's canary alias) come after it too.
    for version in each_stage.resources("AWS::Lambda::Version").values():
        target = version["Properties"]["FunctionName"]["Ref"]
        assert key in _depends_on(resources[target])


def test_provider_invokes_only_the_migration_function(prod: Synthesized) -> None:
    # The provider framework invokes the function synchronously and reports its
    # exception to CloudFormation as FAILED, which fails and rolls back the deployment.
    names = prod.config.names
    migrate = _logical_id(prod, "AWS::Lambda::Function", FunctionName=names.migrate_function)
    statements = role_statements(prod, "MigrationsProviderRole")
    invokes = [s for s in statements if "lambda:InvokeFunction" in _listify(s["Action"])]
    assert invokes
    for statement in invokes:
        for resource in _listify(statement["Resource"]):
            assert json.dumps(resource).count(f'["{migrate}", "Arn"]') == 1, resource
    actions = {a for s in statements for a in _listify(s["Action"])}
    assert actions <= {
        "lambda:InvokeFunction",
        "lambda:GetFunction",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
