"""The real API handler behind the local gateway, over real HTTP on 127.0.0.1.

The handler, bundle, database and tokens are the functional suite's (``api`` fixture in
conftest.py; Kinesis is moto's in-process mock there). What this adds over test_api.py
is the HTTP hop: the request a browser or locust sends becomes the event API Gateway
would send, and the handler's proxy response becomes the HTTP response they get.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from functional.serving_harness import Api
from learnrec.data.dataset import Dataset
from learnrec.serving.apigw import NO_ROUTE_BODY
from learnrec_dev.local.gateway import Gateway


@pytest.fixture(scope="module")
def gateway(api: Api) -> Iterator[Gateway]:
    with Gateway(api.module.handler, port=0) as running:
        yield running


def _call(
    gateway: Gateway,
    method: str,
    target: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, http.client.HTTPResponse, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read()
        return response.status, response, json.loads(text) if text else None
    finally:
        connection.close()


def _learner(small_dataset: Dataset) -> str:
    return str(small_dataset.interactions["user_id"].value_counts().index[0])


def test_health_and_recommendations_over_http(
    gateway: Gateway, api: Api, small_dataset: Dataset
) -> None:
    status, _, body = _call(gateway, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    user = _learner(small_dataset)
    status, response, body = _call(
        gateway, "GET", f"/recommend/{user}?k=5&levels=1&levels=2&levels=3", token=api.token(user)
    )
    assert status == 200, body
    assert response.getheader("Content-Type") == "application/json"
    assert body["user_id"] == user and len(body["items"]) <= 5
    assert all(item["reason"] for item in body["items"])


def test_api_errors_pass_through_unchanged(
    gateway: Gateway, api: Api, small_dataset: Dataset
) -> None:
    user = _learner(small_dataset)
    status, response, body = _call(gateway, "GET", f"/recommend/{user}")
    assert status == 401 and body["error"] == "unauthorized"
    assert response.getheader("WWW-Authenticate") == "Bearer"
    status, _, body = _call(gateway, "GET", f"/recommend/{user}?k=ten", token=api.token(user))
    assert status == 422 and body["detail"][0]["field"] == "query.k"
    # No route in the REST API: API Gateway's answer, before any function runs.
    status, _, body = _call(gateway, "GET", "/no/such/route", token=api.token(user))
    assert status == 404 and body == NO_ROUTE_BODY


def test_events_batch_over_http(gateway: Gateway, api: Api, small_dataset: Dataset) -> None:
    user = _learner(small_dataset)
    now = datetime.now(UTC).isoformat()
    good = {"user_id": user, "content_id": "c00001", "event_type": "click", "ts": now}
    bad = {"user_id": user, "content_id": "c00001", "event_type": "teleport", "ts": now}
    status, _, body = _call(gateway, "POST", "/events", [good, bad], token=api.token(user))
    assert status == 202
    assert (body["accepted"], body["rejected"]) == (1, 1)
    status, _, body = _call(gateway, "POST", "/events", raw=b"\xff\xfe", token=api.token(user))
    assert status == 400 and body["error"] == "request failed"


def test_keep_alive_connection_serves_many_requests(gateway: Gateway) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        for _ in range(5):
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    finally:
        connection.close()
