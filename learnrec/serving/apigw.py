"""API Gateway REST proxy events, as API Gateway sends them to a Lambda function.

The local gateway and the tests turn HTTP requests into exactly these events, so the
real handler runs the same code path it runs in AWS. Two details follow AWS's REST APIs
(payload format 1.0) on purpose, because a handler that works here must work there:

* The matched resource decides ``resource`` and ``pathParameters``. The resources are the
  REST API's own: the routes :func:`learnrec.serving.openapi_doc.gateway_routes` lists
  from the app's OpenAPI spec, which the CDK stack builds the REST API from too
  (:func:`api_routes`). A literal segment beats a ``{variable}`` one. A path no resource
  matches never reaches the function in AWS (API Gateway answers :data:`NO_ROUTE_BODY`);
  an event made for one here gets the ``/{proxy+}`` catch-all, for tests of the app's
  own 404.
* ``path`` stays as the client sent it (percent-encoded); ``pathParameters`` and the query
  string parameters are decoded.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

from learnrec.serving.openapi_doc import Route

PROXY_RESOURCE = "/{proxy+}"

#: What API Gateway answers for a method and path it has no route for: its "missing
#: authentication token" response, which the stack maps to 404 in the app's error shape
#: (cdk/learnrec_cdk/serving.py, GATEWAY_RESPONSES; a test renders that template).
NO_ROUTE_STATUS = 404
NO_ROUTE_BODY = {"error": "not_found", "detail": "Missing Authentication Token"}


@lru_cache(maxsize=1)
def api_routes() -> tuple[Route, ...]:
    """The REST API's routes, as the stack defines them: from the app's OpenAPI spec."""
    from learnrec.serving.openapi_doc import gateway_routes, openapi_spec

    return tuple(gateway_routes(openapi_spec()))


def route_methods(routes: Iterable[Route]) -> dict[str, frozenset[str]]:
    """Resource path -> the HTTP methods it has, for the given routes."""
    methods: dict[str, set[str]] = {}
    for route in routes:
        methods.setdefault(route.path, set()).add(route.method.upper())
    return {path: frozenset(names) for path, names in methods.items()}


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def resolve_resource(
    path: str, resources: Iterable[str] | None = None
) -> tuple[str, dict[str, str] | None]:
    """The resource API Gateway would match for ``path``, and its decoded path parameters.

    Among resources of the same depth, the one with more literal segments, earlier,
    wins (``/admin/models/rollback`` over ``/admin/models/{version}``), as API Gateway
    prefers the most specific match. The root is its own resource without parameters.
    """
    parts = _segments(path.split("?", 1)[0])
    if not parts:
        return "/", None
    if resources is None:
        resources = (route.path for route in api_routes())
    best: tuple[tuple[bool, ...], str, dict[str, str]] | None = None
    for resource in resources:
        template = _segments(resource)
        if len(template) != len(parts):
            continue
        params: dict[str, str] = {}
        literal: list[bool] = []
        for pattern, actual in zip(template, parts, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                params[pattern[1:-1]] = unquote(actual)
                literal.append(False)
            elif pattern == actual:
                literal.append(True)
            else:
                break
        else:
            rank = tuple(literal)
            if best is None or rank > best[0]:
                best = (rank, resource, params)
    if best is not None:
        return best[1], best[2] or None
    return PROXY_RESOURCE, {"proxy": unquote("/".join(parts))}


def _query_pairs(query: str | Mapping[str, str | Sequence[str]] | None) -> list[tuple[str, str]]:
    if isinstance(query, str):
        return parse_qsl(query, keep_blank_values=True)
    return [
        (k, item) for k, v in (query or {}).items() for item in ([v] if isinstance(v, str) else v)
    ]


def rest_event(
    method: str,
    path: str,
    query: str | Mapping[str, str | Sequence[str]] | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
    stage: str = "prod",
    source_ip: str = "127.0.0.1",
    resources: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1 payload) proxy event for ``method path?query``.

    ``headers`` may be a mapping or the raw ``(name, value)`` list of an HTTP request,
    where a repeated header keeps all its values in ``multiValueHeaders`` (and the last
    in ``headers``, as API Gateway does). A ``bytes`` body is sent base64-encoded.
    ``resources`` are the REST API's (default: :func:`api_routes`).
    """
    multi: dict[str, list[str]] = {}
    for key, value in _query_pairs(query):
        multi.setdefault(key, []).append(value)
    header_pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    if not any(name.lower() == "host" for name, _ in header_pairs):
        header_pairs.insert(0, ("Host", "localhost"))
    multi_headers: dict[str, list[str]] = {}
    for name, value in header_pairs:
        multi_headers.setdefault(name, []).append(value)
    header_map = {name: values[-1] for name, values in multi_headers.items()}
    is_binary = isinstance(body, bytes)
    encoded = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    resource, path_parameters = resolve_resource(path, resources)
    user_agent = next((v for k, v in header_map.items() if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "protocol": "HTTP/1.1",
            "accountId": "000000000000",
            "apiId": "local",
        },
        "body": encoded,
        "isBase64Encoded": is_binary,
    }


class ProxyResponseError(ValueError):
    """The function returned something API Gateway cannot turn into a response (a 502)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_response(response: Any) -> HttpResponse:
    """The HTTP response API Gateway makes from a proxy integration's return value.

    ``headers`` and ``multiValueHeaders`` are merged; where both name a header, only the
    multi-value list is kept (API Gateway's documented rule). A base64 body is decoded.
    Anything malformed raises :class:`ProxyResponseError`, which API Gateway answers with
    502 "Malformed Lambda proxy response".
    """
    if not isinstance(response, Mapping):
        raise ProxyResponseError(f"expected a JSON object, got {type(response).__name__}")
    status = response.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ProxyResponseError(f"statusCode must be an HTTP status, got {status!r}")
    multi = response.get("multiValueHeaders") or {}
    single = response.get("headers") or {}
    if not isinstance(multi, Mapping) or not isinstance(single, Mapping):
        raise ProxyResponseError("headers and multiValueHeaders must be objects")
    lowered = {str(name).lower() for name in multi}
    pairs = [(str(k), str(v)) for k, v in single.items() if str(k).lower() not in lowered]
    for name, values in multi.items():
        if not isinstance(values, list):
            raise ProxyResponseError(f"multiValueHeaders[{name!r}] must be a list")
        pairs.extend((str(name), str(value)) for value in values)
    body = response.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise ProxyResponseError(f"body must be a string, got {type(body).__name__}")
    elif response.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError as error:
            raise ProxyResponseError(f"isBase64Encoded body is not base64: {error}") from None
    else:
        raw = body.encode()
    return HttpResponse(status, pairs, raw)


@dataclass
class LambdaContext:
    """The fields of Lambda's context object that Powertools reads."""

    function_name: str = "learnrec-api"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:learnrec-api"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
