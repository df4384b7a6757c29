"""API Gateway REST proxy events, as API Gateway sends them to a Lambda function.

The local gateway and the tests turn HTTP requests into exactly these events, so the
real handler runs the same code path it runs in AWS.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

ROUTES = {"recommend": "/recommend/{user_id}", "learners": "/learners/{user_id}"}


def rest_event(
    method: str,
    path: str,
    query: str | Mapping[str, str | Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    stage: str = "prod",
) -> dict[str, Any]:
    """A REST API (v1 payload) proxy event for ``method path?query``."""
    pairs: list[tuple[str, str]]
    if isinstance(query, str):
        pairs = parse_qsl(query, keep_blank_values=True)
    else:
        pairs = [
            (k, item)
            for k, v in (query or {}).items()
            for item in ([v] if isinstance(v, str) else v)
        ]
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    header_map = {"Host": "localhost", **(headers or {})}
    is_binary = isinstance(body, bytes)
    encoded = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    parts = path.strip("/").split("/")
    path_parameters = None
    if len(parts) >= 2 and parts[0] in ROUTES:
        path_parameters = {"user_id": parts[1]}
    request_id = str(uuid.uuid4())
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": {k: [v] for k, v in header_map.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": header_map.get("User-Agent")},
            "protocol": "HTTP/1.1",
            "accountId": "000000000000",
            "apiId": "local",
        },
        "body": encoded,
        "isBase64Encoded": is_binary,
    }


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
