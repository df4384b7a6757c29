"""OpenSearch fine-grained access control for learnrec's IAM roles, as a custom resource.

The domain runs fine-grained access control (FGAC) with a dedicated admin IAM role as
its master user. IAM lets a role *reach* the domain (``es:ESHttp*``); FGAC decides what
it may do there, and a role that FGAC maps to nothing gets 403 on every request. This
module gives the stack's roles exactly what their requests need, through the security
plugin's REST API, signed (SigV4) as the admin role:

- ``learnrec_search``, for the API function: k-NN search and ``_count`` on the alias
  and its versioned indexes, plus the alias swap that promote and rollback make.
- ``learnrec_indexer``, for the SageMaker jobs and the pipeline function: create a
  version index with its mapping, ``_bulk`` load it, refresh, swap the alias, delete
  old version indexes.

Each is a role (``PUT _plugins/_security/api/roles/<name>``) and a role mapping
(``PUT _plugins/_security/api/rolesmapping/<name>``) whose ``backend_roles`` are the
IAM role ARNs: FGAC treats the ARN of the IAM role that signed a request as a backend
role. Both PUTs replace the whole entity, so Create and Update are the same idempotent
call; Delete removes the mappings, then the roles (a mapping must name an existing role).

Permission names are the security plugin's transport actions, as its privilege
evaluator checks them (OpenSearch 2.x):

- ``_search`` and ``_count`` (which OpenSearch runs as a search) check
  ``indices:data/read/search`` on the alias and on the indexes behind it.
- ``_bulk`` checks the cluster permission ``indices:data/write/bulk``, then per shard
  ``indices:data/write/bulk[s]`` plus ``indices:data/write/index`` for each ``index``
  item on the target index.
- ``PUT <index>`` with settings and mappings is ``indices:admin/create`` only.
- ``POST _aliases`` checks ``indices:admin/aliases`` on every index an action names
  (``remove``/``add``; only ``remove_index`` would need ``indices:admin/delete``).
- ``GET _alias/<alias>`` names no index, so it is evaluated against *every* index
  (``indices:admin/aliases/get``): that one action is granted on ``*``, as reading
  alias names reveals no documents.
- ``POST <index>/_refresh`` is ``indices:admin/refresh`` and its shard action ``[s]``.
- ``DELETE <index>`` is ``indices:admin/delete``.

A CloudFormation custom resource answers by an HTTPS PUT of a JSON document to the
pre-signed ``ResponseURL`` of the request; :func:`handle` always answers, with a
readable reason on failure, so a stack never waits an hour for a silent handler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

logger = logging.getLogger(__name__)

SECURITY_API = "/_plugins/_security/api"
SEARCH_ROLE = "learnrec_search"
INDEXER_ROLE = "learnrec_indexer"
#: Answering a Delete for a resource whose Create failed: nothing to remove.
CREATE_FAILED_PREFIX = "create-failed:"
# CloudFormation shows at most 4 KB of a reason; the start of it is what matters.
_MAX_REASON = 1500

# PUT /admin/catalog makes new items recommendable at once: a bulk write to the alias.
SEARCH_ACTIONS = (
    "indices:data/read/search*",
    "indices:admin/aliases",
    "indices:data/write/bulk*",
    "indices:data/write/index",
    "indices:admin/refresh*",
)
SEARCH_CLUSTER_ACTIONS = ("indices:data/write/bulk",)
INDEXER_ACTIONS = (
    "indices:admin/create",
    "indices:admin/delete",
    "indices:admin/refresh*",
    "indices:admin/aliases",
    "indices:data/write/bulk*",
    "indices:data/write/index",
    "indices:data/read/search*",
)
INDEXER_CLUSTER_ACTIONS = ("indices:data/write/bulk",)
# GET _alias/<name> names no index: evaluated against all of them (see module docstring).
ALIAS_LOOKUP = {"index_patterns": ["*"], "allowed_actions": ["indices:admin/aliases/get"]}
# Seconds between attempts of one call (90 s in all: enough for a fresh domain's
# security index to come up; the function's timeout allows for it on every call).
RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0, 30.0, 30.0)
RETRY_STATUS = frozenset({429, 502, 503, 504})
REQUEST_TIMEOUT_S = 10.0

Sleep = Callable[[float], None]


class SecurityApiError(RuntimeError):
    """The security plugin refused a request; the message says which and why."""


def role_bodies(index_pattern: str) -> dict[str, dict[str, Any]]:
    """The two OpenSearch roles, as ``PUT _plugins/_security/api/roles/<name>`` bodies."""
    return {
        SEARCH_ROLE: {
            "description": "learnrec API: k-NN search on the item alias, catalog "
            "updates into it, alias swap",
            "cluster_permissions": list(SEARCH_CLUSTER_ACTIONS),
            "index_permissions": [
                {"index_patterns": [index_pattern], "allowed_actions": list(SEARCH_ACTIONS)},
                ALIAS_LOOKUP,
            ],
        },
        INDEXER_ROLE: {
            "description": "learnrec jobs and pipeline: build version indexes, swap the alias",
            "cluster_permissions": list(INDEXER_CLUSTER_ACTIONS),
            "index_permissions": [
                {"index_patterns": [index_pattern], "allowed_actions": list(INDEXER_ACTIONS)},
                ALIAS_LOOKUP,
            ],
        },
    }


def roles_digest(index_pattern: str) -> str:
    """A digest of the role bodies: a stack property, so that changing a role's
    permissions here changes the resource and CloudFormation runs an Update."""
    text = json.dumps(role_bodies(index_pattern), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Desired:
    """What the custom resource's properties ask for."""

    endpoint: str
    admin_role_arn: str
    index_pattern: str
    mappings: dict[str, tuple[str, ...]]  # OpenSearch role -> IAM role ARNs

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> Desired:
        """Parse ``ResourceProperties``; ValueError says which property is wrong."""

        def text(key: str) -> str:
            value = properties.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"property {key} must be a non-empty string")
            return value

        raw = properties.get("Mappings")
        if not isinstance(raw, Mapping):
            raise ValueError("property Mappings must map OpenSearch roles to IAM role ARNs")
        known = {SEARCH_ROLE, INDEXER_ROLE}
        mappings: dict[str, tuple[str, ...]] = {}
        for role, arns in raw.items():
            if role not in known:
                raise ValueError(f"unknown OpenSearch role {role!r} (known: {sorted(known)})")
            if not isinstance(arns, list) or not all(
                isinstance(a, str) and a.startswith("arn:") for a in arns
            ):
                raise ValueError(f"Mappings.{role} must be a list of IAM role ARNs")
            mappings[role] = tuple(arns)
        return cls(text("Endpoint"), text("AdminRoleArn"), text("IndexPattern"), mappings)


def _path(kind: str, name: str) -> str:
    return f"{SECURITY_API}/{kind}/{quote(name, safe='')}"


def _request(
    client: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    missing_ok: bool = False,
    sleep: Sleep = time.sleep,
) -> Any:
    """One security API call; a refusal becomes a SecurityApiError naming call and reason.

    A new domain answers 503 ("OpenSearch Security not initialized.") for a while after
    CloudFormation reports it created; that, throttling, gateway errors and connection
    failures are retried after :data:`RETRY_DELAYS`. ``missing_ok``: a 404 (the entity
    is already gone) is success, for deletes.
    """
    from opensearchpy.exceptions import ConnectionError as Unreachable
    from opensearchpy.exceptions import NotFoundError, OpenSearchException, TransportError

    for delay in (*RETRY_DELAYS, None):
        try:
            return client.transport.perform_request(method, path, body=body)
        except NotFoundError as error:
            if missing_ok:
                logger.info("%s %s: already absent", method, path)
                return None
            raise SecurityApiError(
                f"{method} {path} answered 404: {_explain(error.info)}"
            ) from error
        except Unreachable as error:
            if delay is None:
                raise SecurityApiError(
                    f"{method} {path}: domain not reachable ({error})"
                ) from error
            logger.warning("%s %s: domain not reachable, retrying in %ss", method, path, delay)
        except TransportError as error:
            if delay is None or error.status_code not in RETRY_STATUS:
                raise SecurityApiError(
                    f"{method} {path} answered {error.status_code}: {_explain(error.info)}"
                ) from error
            logger.warning(
                "%s %s answered %s, retrying in %ss", method, path, error.status_code, delay
            )
        except OpenSearchException as error:
            raise SecurityApiError(f"{method} {path} failed: {error}") from error
        assert delay is not None  # the last attempt returned or raised above
        sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _explain(info: Any) -> str:
    """The plugin's ``{"status", "message"}`` (or OpenSearch's error object), as text."""
    if isinstance(info, dict):
        if "message" in info:
            return str(info["message"])
        error = info.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}"
        if error:
            return str(error)
    return str(info)


def apply(client: Any, desired: Desired, sleep: Sleep = time.sleep) -> None:
    """Put both roles, then their mappings (the plugin refuses a mapping of a missing role)."""
    for name, body in role_bodies(desired.index_pattern).items():
        _request(client, "PUT", _path("roles", name), body, sleep=sleep)
    for name, arns in sorted(desired.mappings.items()):
        _request(
            client,
            "PUT",
            _path("rolesmapping", name),
            {
                "description": "IAM roles of learnrec (CloudFormation custom resource)",
                "backend_roles": list(arns),
                "hosts": [],
                "users": [],
            },
            sleep=sleep,
        )


def remove(client: Any, desired: Desired, sleep: Sleep = time.sleep) -> None:
    """Delete the mappings, then the roles; already absent counts as removed."""
    for name in sorted(desired.mappings):
        _request(client, "DELETE", _path("rolesmapping", name), missing_ok=True, sleep=sleep)
    for name in sorted(role_bodies(desired.index_pattern)):
        _request(client, "DELETE", _path("roles", name), missing_ok=True, sleep=sleep)


ClientFactory = Callable[[Desired], Any]
Responder = Callable[[str, dict[str, Any]], None]


def handle(
    event: Mapping[str, Any],
    client_for: ClientFactory,
    respond: Responder,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """Carry out one CloudFormation request and answer it; returns the answer sent.

    ``client_for`` builds the OpenSearch client signing as the admin role (from the
    properties); ``respond`` PUTs the answer to the ``ResponseURL``. Any failure, a bad
    property or a refused request alike, is answered FAILED with the reason, never
    raised: CloudFormation would otherwise wait for an answer that never comes.
    """
    request_type = str(event.get("RequestType", ""))
    physical_id = str(event.get("PhysicalResourceId") or "")
    status, reason, data = "SUCCESS", "", {}
    try:
        if request_type == "Delete":
            if not physical_id.startswith(CREATE_FAILED_PREFIX):
                desired = Desired.from_properties(event.get("ResourceProperties", {}))
                remove(client_for(desired), desired, sleep)
        elif request_type in ("Create", "Update"):
            desired = Desired.from_properties(event.get("ResourceProperties", {}))
            apply(client_for(desired), desired, sleep)
            # One domain, one set of roles: a new endpoint (replaced domain) is a new
            # resource, and CloudFormation then deletes the old one's roles.
            physical_id = f"learnrec-search-security:{desired.endpoint}"
            data = {"Roles": ",".join(sorted(desired.mappings))}
        else:
            raise ValueError(f"unknown RequestType {request_type!r}")
    except Exception as error:  # every failure must reach CloudFormation
        logger.exception("%s failed", request_type)
        status, reason = "FAILED", f"{type(error).__name__}: {error}"[:_MAX_REASON]
        if request_type == "Create":
            physical_id = f"{CREATE_FAILED_PREFIX}{event.get('RequestId', '')}"
    answer = {
        "Status": status,
        "Reason": reason or "OpenSearch roles and role mappings are in place",
        "PhysicalResourceId": physical_id or f"{CREATE_FAILED_PREFIX}{event.get('RequestId', '')}",
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": data,
    }
    respond(str(event.get("ResponseURL", "")), answer)
    return answer


def put_response(url: str, answer: dict[str, Any], timeout: float = 30.0) -> None:
    """PUT the answer to CloudFormation's pre-signed S3 URL, as the protocol asks.

    The URL is signed without a content type, so the request must not send one.
    """
    if urlsplit(url).scheme not in ("https", "http"):
        raise ValueError(f"ResponseURL must be an HTTP(S) URL, got {url[:60]!r}")
    body = json.dumps(answer).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def admin_client(desired: Desired, region: str, timeout: float = REQUEST_TIMEOUT_S) -> Any:
    """An OpenSearch client signing as the admin (master user) role, assumed via STS."""
    import boto3
    from botocore.credentials import Credentials
    from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection

    assumed = boto3.client("sts", region_name=region).assume_role(
        RoleArn=desired.admin_role_arn,
        RoleSessionName="learnrec-search-security",
        DurationSeconds=900,
    )["Credentials"]
    credentials = Credentials(
        assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"]
    )
    host = desired.endpoint.removeprefix("https://").rstrip("/")
    return OpenSearch(
        hosts=[{"host": host, "port": 443}],
        http_auth=AWSV4SignerAuth(credentials, region, "es"),
        use_ssl=True,
        verify_certs=True,
        connection_class=RequestsHttpConnection,
        timeout=timeout,
        max_retries=0,  # _request retries, with delays
    )
