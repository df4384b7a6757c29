"""The search domain's access control as synthesized: who is the master user, which IAM
roles the custom resource maps to which OpenSearch role, and how it runs."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

from unit.test_search_security import api_requests, indexer_requests

from learnrec.search_security import (
    INDEXER_ROLE,
    REQUEST_TIMEOUT_S,
    RETRY_DELAYS,
    SEARCH_ROLE,
    roles_digest,
)

from .conftest import ACCOUNT, Synthesized
from .test_least_privilege import _listify, role_statements


def _function_role(synth: Synthesized, function_name: str) -> dict[str, Any]:
    """``Fn::GetAtt [<role>, Arn]`` of the function named ``function_name``."""
    functions = [
        f["Properties"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == function_name
    ]
    assert len(functions) == 1, function_name
    role: dict[str, Any] = functions[0]["Role"]
    return role


def _role_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _only(synth: Synthesized, kind: str, part: str) -> str:
    ids = [k for k in synth.resources(kind) if part in k]
    assert len(ids) == 1, (part, ids)
    return ids[0]


def _mappings(synth: Synthesized) -> dict[str, Any]:
    resources = synth.resources("Custom::LearnrecSearchSecurity")
    assert len(resources) == 1
    props: dict[str, Any] = next(iter(resources.values()))["Properties"]
    return props


def test_the_custom_resource_maps_exactly_the_stacks_roles(each_stage: Synthesized) -> None:
    names = each_stage.config.names
    props = _mappings(each_stage)
    api = _function_role(each_stage, names.api_function)
    pipeline = _function_role(each_stage, names.pipeline_function)
    jobs = _role_arn(_only(each_stage, "AWS::IAM::Role", "JobsRole"))
    assert props["Mappings"] == {SEARCH_ROLE: [api], INDEXER_ROLE: [jobs, pipeline]}
    assert props["IndexPattern"] == f"{names.opensearch_alias}*"
    # A change to the roles' permissions changes the resource, so it is applied.
    assert props["RolesDigest"] == roles_digest(props["IndexPattern"])
    domain = _only(each_stage, "AWS::OpenSearchService::Domain", "Domain")
    assert props["Endpoint"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [domain, "DomainEndpoint"]}]]
    }


def test_the_master_user_is_the_admin_role_not_a_workload_role(each_stage: Synthesized) -> None:
    names = each_stage.config.names
    domain = next(iter(each_stage.resources("AWS::OpenSearchService::Domain").values()))
    security = domain["Properties"]["AdvancedSecurityOptions"]
    admin = _only(each_stage, "AWS::IAM::Role", "SearchAdminRole")
    assert security["Enabled"] is True and security["InternalUserDatabaseEnabled"] is False
    assert security["MasterUserOptions"] == {"MasterUserARN": _role_arn(admin)}
    assert _mappings(each_stage)["AdminRoleArn"] == _role_arn(admin)

    workload_roles = [
        f["Properties"]["Role"] for f in each_stage.resources("AWS::Lambda::Function").values()
    ]
    workload_roles.append(_role_arn(_only(each_stage, "AWS::IAM::Role", "JobsRole")))
    assert _role_arn(admin) not in workload_roles
    for function in (names.api_function, names.pipeline_function):
        assert _function_role(each_stage, function) != _role_arn(admin)

    # Operators of the account may assume it (with sts:AssumeRole in their own policy).
    trust = each_stage.template["Resources"][admin]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRole" and statement["Effect"] == "Allow"
    principal = statement["Principal"]["AWS"]
    assert principal == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::{ACCOUNT}:root"]]
    }
    outputs = each_stage.template["Outputs"]
    assert outputs["SearchAdminRoleArn"]["Value"] == _role_arn(admin)


def test_the_handler_runs_in_the_app_subnets_and_may_assume_only_the_admin_role(
    prod: Synthesized,
) -> None:
    names = prod.config.names
    props = _mappings(prod)
    functions = {
        k: f["Properties"]
        for k, f in prod.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("FunctionName") == names.search_security_function
    }
    ((function_id, function),) = functions.items()
    assert props["ServiceToken"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert function["Runtime"] == "python3.12"
    # Four calls that each exhaust their retries still leave time to answer CloudFormation.
    attempts = len(RETRY_DELAYS) + 1
    assert function["Timeout"] > 4 * (attempts * REQUEST_TIMEOUT_S + sum(RETRY_DELAYS)) + 30
    subnets = [ref["Ref"] for ref in function["VpcConfig"]["SubnetIds"]]
    assert subnets and all("appSubnet" in subnet for subnet in subnets)

    role_id = function["Role"]["Fn::GetAtt"][0]
    admin = _only(prod, "AWS::IAM::Role", "SearchAdminRole")
    assumes = [s for s in role_statements(prod, role_id) if "sts:AssumeRole" in str(s["Action"])]
    assert assumes == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": _role_arn(admin)}
    ]
    es = [s for s in role_statements(prod, role_id) if "es:" in str(s["Action"])]
    assert es == []  # it signs as the admin role, never as itself


# ------------------------------------------------------------------ IAM: reaching the domain


def _render(value: Any, domain: str) -> Any:
    """A policy resource as text, the domain's ARN written ``arn:DOMAIN``."""
    if isinstance(value, str):
        return value
    if value == {"Fn::GetAtt": [domain, "Arn"]}:
        return "arn:DOMAIN"
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_render(part, domain)) for part in parts)
    return json.dumps(value)  # another resource's ARN: never matches a domain path


def _es_allows(synth: Synthesized, role_id: str, method: str, path: str) -> bool:
    domain = _only(synth, "AWS::OpenSearchService::Domain", "Domain")
    action = f"es:ESHttp{method.capitalize()}"
    for statement in role_statements(synth, role_id):
        actions = _listify(statement["Action"])
        resources = [_render(r, domain) for r in _listify(statement["Resource"])]
        if any(fnmatchcase(action, a) for a in actions) and any(
            fnmatchcase(f"arn:DOMAIN{path}", r) for r in resources
        ):
            return True
    return False


def _role_id(role_arn: dict[str, Any]) -> str:
    return str(role_arn["Fn::GetAtt"][0])


def test_iam_lets_each_role_send_exactly_its_requests(prod: Synthesized) -> None:
    """The requests learnrec sends (recorded from the adapter) pass IAM for their roles;
    the api role cannot create or delete indexes, nor touch the security plugin."""
    names = prod.config.names
    api = _role_id(_function_role(prod, names.api_function))
    pipeline = _role_id(_function_role(prod, names.pipeline_function))
    jobs = _only(prod, "AWS::IAM::Role", "JobsRole")
    for request in api_requests():
        assert _es_allows(prod, api, request.method, request.path), (request.method, request.path)
    for request in indexer_requests():
        assert _es_allows(prod, jobs, request.method, request.path), (request.method, request.path)
    # The pipeline function only moves the alias (promote); IAM lets it do nothing more.
    for method, path in (("GET", "/_alias/learnrec-items"), ("POST", "/_aliases")):
        assert _es_allows(prod, pipeline, method, path), (method, path)
    for method, path in (("PUT", "/learnrec-items-v9"), ("POST", "/learnrec-items-v1/_bulk")):
        assert not _es_allows(prod, pipeline, method, path), (method, path)
    # A POST _bulk looks like a POST _search to IAM: FGAC's learnrec_search refuses it.
    for method, path in (
        ("PUT", "/learnrec-items-v9"),
        ("DELETE", "/learnrec-items-v1"),
        ("PUT", "/_plugins/_security/api/roles/learnrec_search"),
        ("POST", "/other-index/_search"),
    ):
        assert not _es_allows(prod, api, method, path), (method, path)
