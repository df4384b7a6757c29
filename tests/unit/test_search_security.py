"""The OpenSearch security custom resource, on the exact requests it sends and the answers
it gives CloudFormation (a real HTTP PUT to a local server standing in for the
pre-signed ResponseURL)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch

from learnrec.retrieval.index import IndexedItem, ItemFilter
from learnrec.retrieval.opensearch_index import OpenSearchIndex
from learnrec.search_security import (
    CREATE_FAILED_PREFIX,
    INDEXER_ROLE,
    RETRY_DELAYS,
    SEARCH_ROLE,
    Desired,
    handle,
    put_response,
    role_bodies,
    roles_digest,
)
from unit.opensearch_recorder import FakeCluster, Recorded, make_client

ALIAS = "learnrec-items"
ENDPOINT = "https://vpc-learnrec-prod-abc.eu-west-1.es.amazonaws.com"
ADMIN = "arn:aws:iam::123456789012:role/learnrec-prod-SearchAdminRole"
API = "arn:aws:iam::123456789012:role/learnrec-prod-ServingApiRole"
JOBS = "arn:aws:iam::123456789012:role/learnrec-prod-JobsRole"
PIPELINE = "arn:aws:iam::123456789012:role/learnrec-prod-RetrainPipelineRole"
BASE = "/_plugins/_security/api"
ACCOUNT = "123456789012"


class Answers:
    """A local HTTP server recording the PUTs CloudFormation's ResponseURL would get."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        answers = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                answers.received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/cloudformation-custom-resource-response?X-Amz-Signature=x"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def answers() -> Iterator[Answers]:
    server = Answers()
    yield server
    server.close()


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def _properties(indexers: list[str] | None = None) -> dict[str, Any]:
    return {
        "ServiceToken": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:learnrec-search-security",
        "Endpoint": ENDPOINT,
        "AdminRoleArn": ADMIN,
        "IndexPattern": f"{ALIAS}*",
        "RolesDigest": roles_digest(f"{ALIAS}*"),
        "Mappings": {SEARCH_ROLE: [API], INDEXER_ROLE: indexers or [JOBS, PIPELINE]},
    }


def _event(request_type: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/learnrec-prod/1",
        "RequestId": f"req-{request_type.lower()}",
        "ResourceType": "Custom::LearnrecSearchSecurity",
        "LogicalResourceId": "SearchSecurityMappings",
        "ResourceProperties": _properties(),
        **extra,
    }


def _run(
    event: dict[str, Any], cluster: FakeCluster, slept: list[float] | None = None
) -> dict[str, Any]:
    seen: list[Desired] = []

    def client_for(desired: Desired) -> OpenSearch:
        seen.append(desired)
        return make_client(cluster)

    delays = [] if slept is None else slept
    answer = handle(event, client_for, put_response, sleep=delays.append)
    if slept is None:
        assert delays == []  # no retries unless the test expects them
    if seen:
        assert seen[0].admin_role_arn == ADMIN and seen[0].endpoint == ENDPOINT
    return answer


def _calls(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in cluster.requests]


def test_create_puts_both_roles_then_maps_them_to_the_iam_roles(
    cluster: FakeCluster, answers: Answers
) -> None:
    answer = _run(_event("Create", answers.url), cluster)

    assert _calls(cluster) == [
        ("PUT", f"{BASE}/roles/learnrec_search"),
        ("PUT", f"{BASE}/roles/learnrec_indexer"),
        ("PUT", f"{BASE}/rolesmapping/learnrec_indexer"),
        ("PUT", f"{BASE}/rolesmapping/learnrec_search"),
    ]
    bodies = {r.path.removeprefix(f"{BASE}/"): r.body for r in cluster.requests}
    assert bodies["roles/learnrec_search"] == {
        "description": "learnrec API: k-NN search on the item alias, catalog updates into "
        "it, alias swap",
        "cluster_permissions": ["indices:data/write/bulk"],
        "index_permissions": [
            {
                "index_patterns": ["learnrec-items*"],
                "allowed_actions": [
                    "indices:data/read/search*",
                    "indices:admin/aliases",
                    "indices:data/write/bulk*",
                    "indices:data/write/index",
                    "indices:admin/refresh*",
                ],
            },
            {"index_patterns": ["*"], "allowed_actions": ["indices:admin/aliases/get"]},
        ],
    }
    assert bodies["roles/learnrec_indexer"]["cluster_permissions"] == ["indices:data/write/bulk"]
    assert bodies["rolesmapping/learnrec_search"] == {
        "description": "IAM roles of learnrec (CloudFormation custom resource)",
        "backend_roles": [API],
        "hosts": [],
        "users": [],
    }
    assert bodies["rolesmapping/learnrec_indexer"]["backend_roles"] == [JOBS, PIPELINE]

    # The answer reached the ResponseURL as CloudFormation expects it: a PUT of JSON
    # without a content type (the URL is signed without one).
    assert len(answers.received) == 1
    path, headers, sent = answers.received[0]
    assert path.startswith("/cloudformation-custom-resource-response?")
    assert headers.get("Content-Type", "") == ""
    assert sent == answer
    assert sent["Status"] == "SUCCESS"
    assert sent["PhysicalResourceId"] == f"learnrec-search-security:{ENDPOINT}"
    assert sent["RequestId"] == "req-create"
    assert sent["StackId"].endswith("stack/learnrec-prod/1")
    assert sent["LogicalResourceId"] == "SearchSecurityMappings"


def test_update_puts_again_idempotently_with_the_new_role_arns(
    cluster: FakeCluster, answers: Answers
) -> None:
    _run(_event("Create", answers.url), cluster)
    cluster.requests.clear()
    other = "arn:aws:iam::123456789012:role/learnrec-prod-OtherJobsRole"
    update = _event(
        "Update",
        answers.url,
        PhysicalResourceId=f"learnrec-search-security:{ENDPOINT}",
        ResourceProperties=_properties([other]),
        OldResourceProperties=_properties(),
    )
    answer = _run(update, cluster)

    assert [m for m, _ in _calls(cluster)] == ["PUT"] * 4
    assert cluster.security["rolesmapping"]["learnrec_indexer"]["backend_roles"] == [other]
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == f"learnrec-search-security:{ENDPOINT}"


def test_delete_removes_mappings_then_roles_and_tolerates_absent_ones(
    cluster: FakeCluster, answers: Answers
) -> None:
    _run(_event("Create", answers.url), cluster)
    del cluster.security["rolesmapping"]["learnrec_search"]  # removed by hand meanwhile
    cluster.requests.clear()
    physical = f"learnrec-search-security:{ENDPOINT}"
    answer = _run(_event("Delete", answers.url, PhysicalResourceId=physical), cluster)

    assert _calls(cluster) == [
        ("DELETE", f"{BASE}/rolesmapping/learnrec_indexer"),
        ("DELETE", f"{BASE}/rolesmapping/learnrec_search"),
        ("DELETE", f"{BASE}/roles/learnrec_indexer"),
        ("DELETE", f"{BASE}/roles/learnrec_search"),
    ]
    assert cluster.security == {"roles": {}, "rolesmapping": {}}
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == physical
    assert answers.received[-1][2]["Status"] == "SUCCESS"


def test_a_refused_request_becomes_a_failed_answer_with_the_plugins_reason(
    cluster: FakeCluster, answers: Answers
) -> None:
    cluster.security_refusal = (
        403,
        "no permissions for [] and User [name=arn:aws:iam::123456789012:role/x, "
        "backend_roles=[], requestedTenant=null]",
    )
    answer = _run(_event("Create", answers.url), cluster)

    assert _calls(cluster) == [("PUT", f"{BASE}/roles/learnrec_search")]  # stops at once
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == (
        "SecurityApiError: PUT /_plugins/_security/api/roles/learnrec_search answered 403: "
        "no permissions for [] and User [name=arn:aws:iam::123456789012:role/x, "
        "backend_roles=[], requestedTenant=null]"
    )
    assert answer["PhysicalResourceId"] == f"{CREATE_FAILED_PREFIX}req-create"
    assert answers.received[-1][2] == answer

    # The rollback deletes what never existed: answered at once, nothing sent.
    cluster.requests.clear()
    rollback = _event("Delete", answers.url, PhysicalResourceId=answer["PhysicalResourceId"])
    assert _run(rollback, cluster)["Status"] == "SUCCESS"
    assert cluster.requests == []


def test_an_unreachable_domain_fails_with_a_reason_too(
    cluster: FakeCluster, answers: Answers
) -> None:
    cluster.down = True
    slept: list[float] = []
    answer = _run(_event("Update", answers.url, PhysicalResourceId="p"), cluster, slept)
    # Tried again after each delay, then given up with the reason.
    assert slept == list(RETRY_DELAYS)
    assert _calls(cluster) == [("PUT", f"{BASE}/roles/learnrec_search")] * (len(slept) + 1)
    assert answer["Status"] == "FAILED"
    assert (
        "PUT /_plugins/_security/api/roles/learnrec_search: domain not reachable"
        in (answer["Reason"])
    )
    assert answer["PhysicalResourceId"] == "p"  # an Update keeps its resource


def test_a_domain_whose_security_is_not_up_yet_is_waited_for(
    cluster: FakeCluster, answers: Answers
) -> None:
    cluster.security_unavailable = 2
    slept: list[float] = []
    answer = _run(_event("Create", answers.url), cluster, slept)
    assert slept == list(RETRY_DELAYS[:2])
    assert _calls(cluster)[:3] == [("PUT", f"{BASE}/roles/learnrec_search")] * 3
    assert len(cluster.requests) == 3 + 3  # then the other role and both mappings
    assert answer["Status"] == "SUCCESS"
    assert set(cluster.security["rolesmapping"]) == {SEARCH_ROLE, INDEXER_ROLE}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Endpoint": ""}, "property Endpoint must be a non-empty string"),
        ({"Mappings": {"all_access": [API]}}, "unknown OpenSearch role 'all_access'"),
        ({"Mappings": {SEARCH_ROLE: ["not-an-arn"]}}, "must be a list of IAM role ARNs"),
    ],
)
def test_bad_properties_fail_before_any_request(
    cluster: FakeCluster, answers: Answers, change: dict[str, Any], reason: str
) -> None:
    event = _event("Create", answers.url, ResourceProperties={**_properties(), **change})
    answer = _run(event, cluster)
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("ValueError: ") and reason in answer["Reason"]
    assert cluster.requests == []


# ------------------------------------------------------------------ the permissions
#
# The security plugin's transport actions behind each REST request learnrec sends, as
# its privilege evaluator checks them (PrivilegesEvaluator: bulk is a cluster action
# and each item an index action on the shard request; _count runs as a search; GET
# _alias/<name> names no index and is evaluated against all of them).
ANY_INDEX = "*"


def _required(request: Recorded) -> list[tuple[str, str, str]]:
    """(kind, action, index) triples a request needs; kind is "cluster" or "index"."""
    parts = [p for p in request.path.split("/") if p]
    method = request.method
    if method == "PUT" and len(parts) == 1:
        return [("index", "indices:admin/create", parts[0])]
    if method == "DELETE" and len(parts) == 1:
        return [("index", "indices:admin/delete", parts[0])]
    if method == "GET" and parts[0] == "_alias":
        return [("index", "indices:admin/aliases/get", ANY_INDEX)]
    if method == "POST" and parts == ["_aliases"]:
        needed = []
        for action in request.body["actions"]:
            ((kind, spec),) = action.items()
            assert kind in ("add", "remove")  # remove_index would need indices:admin/delete
            needed.append(("index", "indices:admin/aliases", spec["index"]))
        return needed
    target, endpoint = parts
    if endpoint == "_bulk":
        ops = {next(iter(line)) for line in request.body[::2]}
        assert ops == {"index"}
        return [
            ("cluster", "indices:data/write/bulk", ""),
            ("index", "indices:data/write/bulk[s]", target),
            ("index", "indices:data/write/index", target),
        ]
    if endpoint == "_refresh":
        return [
            ("index", "indices:admin/refresh", target),
            ("index", "indices:admin/refresh[s]", target),
        ]
    if endpoint in ("_search", "_count"):
        return [
            ("index", "indices:data/read/search", target),
            ("index", "indices:data/read/search[phase/query]", target),
        ]
    raise AssertionError(f"no permission table entry for {method} {request.path}")


def _allows(role: dict[str, Any], kind: str, action: str, index: str) -> list[str]:
    """The role's patterns that grant ``action`` (on ``index``); empty when none does."""
    if kind == "cluster":
        return [p for p in role["cluster_permissions"] if fnmatchcase(action, p)]
    return [
        f"{pattern}:{allowed}"
        for grant in role["index_permissions"]
        for pattern in grant["index_patterns"]
        if fnmatchcase(index, pattern)
        for allowed in grant["allowed_actions"]
        if fnmatchcase(action, allowed)
    ]


def _items() -> list[IndexedItem]:
    return [
        IndexedItem("c1", np.asarray([3, 4], dtype=np.float32), topics=("algebra",), level=1),
        IndexedItem("c2", np.asarray([0, 2], dtype=np.float32), topics=("calculus",), level=2),
    ]


def indexer_requests() -> list[Recorded]:
    """What the jobs and the pipeline send: build two versions, swap, clean up, check."""
    cluster = FakeCluster()
    client = make_client(cluster)
    index = OpenSearchIndex(client, ALIAS)
    for version in ("v1", "v2"):
        index.create_version_index(version, 2)
        index.bulk_load(version, _items())
        index.swap_alias(version)
    client.indices.delete(index=index.index_name("v1"))  # the superseded version
    index.upsert(_items()[:1])
    assert len(index) == 2
    return cluster.requests


def api_requests() -> list[Recorded]:
    """What the API sends: filtered k-NN search, promote/rollback's alias swap, and the
    catalog route's upsert of new items into the serving alias."""
    cluster = FakeCluster()
    client = make_client(cluster)
    index = OpenSearchIndex(client, ALIAS)
    for version in ("v1", "v2"):
        index.create_version_index(version, 2)
        index.bulk_load(version, _items())
    index.swap_alias("v1")
    cluster.requests.clear()
    index.search(np.asarray([1, 0], dtype=np.float32), 2, ItemFilter(levels=frozenset({1})))
    index.swap_alias("v2")  # promote
    index.swap_alias("v1")  # rollback
    index.upsert(_items()[:1])  # PUT /admin/catalog: new items recommendable at once
    return cluster.requests


@pytest.mark.parametrize(
    ("role_name", "requests"),
    [(SEARCH_ROLE, api_requests), (INDEXER_ROLE, indexer_requests)],
)
def test_each_role_allows_every_request_of_its_users_and_nothing_unused(
    role_name: str, requests: Any
) -> None:
    role = role_bodies(f"{ALIAS}*")[role_name]
    used: set[str] = set()
    for request in requests():
        for kind, action, index in _required(request):
            granted = _allows(role, kind, action, index)
            assert granted, f"{role_name} lacks {action} on {index or 'the cluster'}"
            used.update(granted)
    offered = set(role["cluster_permissions"]) | {
        f"{pattern}:{allowed}"
        for grant in role["index_permissions"]
        for pattern in grant["index_patterns"]
        for allowed in grant["allowed_actions"]
    }
    # Narrowest: every grant is needed by some request (cluster grants match by name).
    assert offered - used == set(), f"{role_name} grants more than its requests use"


def test_the_search_role_cannot_build_or_delete_indexes() -> None:
    role = role_bodies(f"{ALIAS}*")[SEARCH_ROLE]
    for action in ("indices:admin/create", "indices:admin/delete", "indices:admin/mapping/put"):
        assert not _allows(role, "index", action, "learnrec-items-v9")
    # It writes documents (catalog updates) only into the alias's indexes.
    assert not _allows(role, "index", "indices:data/write/index", "other-index")
    # and nothing outside the alias's indexes but the alias lookup
    assert not _allows(role, "index", "indices:data/read/search", "other-index")


def test_the_admin_client_signs_for_es_as_the_assumed_admin_role(local_env: Any) -> None:
    """STS (the local AWS) hands out the admin role's session; requests carry it, SigV4 'es'."""
    import requests

    from learnrec.search_security import admin_client

    iam = local_env.client("iam")
    arn = iam.create_role(
        RoleName=f"search-admin-{id(local_env)}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    desired = Desired.from_properties({**_properties(), "AdminRoleArn": arn})
    client = admin_client(desired, "eu-west-1")

    (connection,) = client.transport.connection_pool.connections
    assert connection.host == "https://vpc-learnrec-prod-abc.eu-west-1.es.amazonaws.com:443"
    request = requests.Request(
        "PUT", f"{connection.host}{BASE}/roles/learnrec_search", data=b"{}"
    ).prepare()
    signed = connection.session.auth(request)
    authorization = signed.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/eu-west-1/es/aws4_request" in authorization
    access_key = authorization.split("Credential=", 1)[1].split("/", 1)[0]
    # The assumed role's temporary keys (with their session token), not the caller's own.
    assert access_key.startswith("ASIA") and access_key != os.environ["AWS_ACCESS_KEY_ID"]
    assert signed.headers["X-Amz-Security-Token"]
