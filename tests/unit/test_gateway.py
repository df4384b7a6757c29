"""The local gateway's translation between HTTP and API Gateway REST proxy events.

The function behind the gateway here is a small stand-in that echoes its event or
misbehaves on purpose, because what is under test is the gateway's side of the contract
(event shape, response mapping, API Gateway's error statuses); the real API handler runs
behind it in tests/functional/test_gateway.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from learnrec.serving.apigw import (
    NO_ROUTE_BODY,
    PROXY_RESOURCE,
    ProxyResponseError,
    api_routes,
    http_response,
    resolve_resource,
    rest_event,
)
from learnrec.serving.auth import TokenVerifier, generate_key_pair
from learnrec.serving.openapi_doc import Route, gateway_routes, openapi_spec
from learnrec_dev.local.cli import parse_learners
from learnrec_dev.local.gateway import MAX_PAYLOAD_BYTES, DemoConfig, Gateway


@pytest.mark.parametrize(
    ("path", "resource", "params"),
    [
        ("/recommend/u00001", "/recommend/{user_id}", {"user_id": "u00001"}),
        ("/recommend/a%20b", "/recommend/{user_id}", {"user_id": "a b"}),
        ("/learners/u1/profile", "/learners/{user_id}/profile", {"user_id": "u1"}),
        ("/learners/u1", "/learners/{user_id}", {"user_id": "u1"}),
        ("/similar/c00007", "/similar/{content_id}", {"content_id": "c00007"}),
        ("/admin/models/rollback", "/admin/models/rollback", None),
        ("/admin/models/v3/promote", "/admin/models/{version}/promote", {"version": "v3"}),
        ("/health", "/health", None),
        ("/", "/", None),
        ("/nope/deeper/still", PROXY_RESOURCE, {"proxy": "nope/deeper/still"}),
        ("/recommend", PROXY_RESOURCE, {"proxy": "recommend"}),
    ],
)
def test_resources_resolve_like_api_gateway(
    path: str, resource: str, params: dict[str, str] | None
) -> None:
    assert resolve_resource(path) == (resource, params)


def test_the_routes_are_the_rest_apis() -> None:
    """The stack's routes (cdk/app.py: gateway_routes(openapi_spec())), and the app's."""
    from fastapi.routing import iter_route_contexts

    from learnrec.serving.api import create_app

    routes = {(r.method, r.path) for r in api_routes()}
    assert routes == {(r.method, r.path) for r in gateway_routes(openapi_spec())}
    assert {("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json")} <= routes
    app = create_app(lambda: None, docs=True)  # type: ignore[arg-type,return-value]
    # Included routers are nodes of app.routes: their routes are walked, not listed.
    served = {
        (method, context.path or "")
        for context in iter_route_contexts(app.routes)
        for method in context.methods or ()
        if method != "HEAD"
    }
    assert ("GET", "/recommend/{user_id}") in served
    # Swagger UI's OAuth2 redirect page serves no OAuth2 flow here: bearer tokens only.
    assert served - routes == {("GET", "/docs/oauth2-redirect")}


def test_event_keeps_repeated_headers_and_queries() -> None:
    event = rest_event(
        "get",
        "/recommend/u1",
        "k=5&levels=1&levels=2",
        [("Accept", "a/b"), ("X-Tag", "one"), ("X-Tag", "two")],
    )
    assert event["httpMethod"] == "GET"
    assert event["resource"] == "/recommend/{user_id}"
    assert event["pathParameters"] == {"user_id": "u1"}
    assert event["multiValueHeaders"]["X-Tag"] == ["one", "two"]
    assert event["headers"]["X-Tag"] == "two"
    assert event["multiValueQueryStringParameters"] == {"k": ["5"], "levels": ["1", "2"]}
    assert event["queryStringParameters"] == {"k": "5", "levels": "2"}
    assert event["body"] is None and event["isBase64Encoded"] is False


def test_response_merges_headers_and_decodes_base64() -> None:
    response = http_response(
        {
            "statusCode": 201,
            "headers": {"content-type": "application/octet-stream", "x-one": "1"},
            "multiValueHeaders": {"X-One": ["a", "b"], "set-cookie": ["c=1"]},
            "body": base64.b64encode(b"\x00\xff").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert response.body == b"\x00\xff"
    assert sorted(response.headers) == [
        ("X-One", "a"),
        ("X-One", "b"),
        ("content-type", "application/octet-stream"),
        ("set-cookie", "c=1"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"body": "x"},
        {"statusCode": "200"},
        {"statusCode": 200, "body": {"a": 1}},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
        {"statusCode": 200, "multiValueHeaders": {"a": "b"}},
    ],
)
def test_malformed_responses_are_refused(bad: Any) -> None:
    with pytest.raises(ProxyResponseError):
        http_response(bad)


# ---------------------------------------------------------------------------- over HTTP


RELEASE_SLOW = threading.Event()
# The stand-in function's REST API: what the tests below call, and nothing else.
ECHO_ROUTES = [
    Route(path, method, params, (), method != "GET")
    for method, path, params in [
        ("GET", "/health", ()),
        ("GET", "/boom", ()),
        ("GET", "/garbage", ()),
        ("GET", "/slow", ()),
        ("PUT", "/events", ()),
        ("POST", "/events", ()),
        ("GET", "/recommend/{user_id}", ("user_id",)),
        ("POST", "/learners/{user_id}/profile", ("user_id",)),
    ]
]


def _echo(event: dict[str, Any], context: Any) -> Any:
    """Echo the event; some paths misbehave the ways a function can.

    ``/slow`` blocks until the test releases it, so the timeout fires without a race.
    """
    if event["path"] == "/boom":
        raise RuntimeError("function crashed")
    if event["path"] == "/garbage":
        return {"statusCode": "ok"}
    if event["path"] == "/slow":
        RELEASE_SLOW.wait(timeout=30)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"X-Seen-By": ["a", "b"]},
        "body": json.dumps({"event": event, "thread": threading.current_thread().name}),
        "isBase64Encoded": False,
    }


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    folder = tmp_path / "frontend"
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>t</title>")
    (folder / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("no")
    return folder


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture
def gateway(frontend: Path, keys: tuple[str, str]) -> Iterator[Gateway]:
    demo = DemoConfig(keys[0], ["u00001", "u00002"])
    with Gateway(
        _echo, port=0, frontend=frontend, demo=demo, timeout_s=2.0, routes=ECHO_ROUTES
    ) as running:
        yield running


def _request(
    gateway: Gateway,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


def test_request_becomes_a_proxy_event(gateway: Gateway) -> None:
    status, response, body = _request(
        gateway,
        "POST",
        "/learners/u%2001/profile?x=1&x=2",
        body=b'{"a": 1}',
        headers={"Authorization": "Bearer t"},
    )
    assert status == 200
    assert response.getheader("X-Seen-By") == "a, b"
    event = json.loads(body)["event"]
    assert event["resource"] == "/learners/{user_id}/profile"
    assert event["path"] == "/learners/u%2001/profile"  # REST APIs keep the path encoded
    assert event["pathParameters"] == {"user_id": "u 01"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["Authorization"] == "Bearer t"
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["stage"] == "local"


def test_binary_body_is_base64(gateway: Gateway) -> None:
    _, _, body = _request(gateway, "PUT", "/events", body=b"\xff\xfe\x00")
    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00"


def test_function_errors_map_to_api_gateway_statuses(gateway: Gateway) -> None:
    status, _, body = _request(gateway, "GET", "/boom")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
    status, _, body = _request(gateway, "GET", "/garbage")
    assert (status, json.loads(body)) == (502, {"message": "Malformed Lambda proxy response"})
    RELEASE_SLOW.clear()
    status, _, body = _request(gateway, "GET", "/slow")
    assert (status, json.loads(body)) == (504, {"message": "Endpoint request timed out"})
    RELEASE_SLOW.set()  # the stuck invocation ends; the container serves the next one
    # the gateway survives all three
    assert _request(gateway, "GET", "/health")[0] == 200


def test_what_api_gateway_has_no_route_for_never_reaches_the_function(
    gateway: Gateway,
) -> None:
    invoked = []

    def record(event: dict[str, Any], context: Any) -> Any:
        invoked.append(event["path"])
        return _echo(event, context)

    with Gateway(record, port=0) as real:  # the REST API's own routes
        for method, target in [
            ("GET", "/nope"),
            ("GET", "/recommend"),  # the resource needs its {user_id}
            ("GET", "/"),
            ("POST", "/health"),  # a resource, not with this method
            ("HEAD", "/health"),
            ("GET", "/docs/oauth2-redirect"),
        ]:
            status, _, body = _request(real, method, target)
            assert status == 404, (method, target)
            if method != "HEAD":
                assert json.loads(body) == NO_ROUTE_BODY
        assert invoked == []
        # The docs pages are routes: the function decides (Settings.docs_enabled).
        for target in ("/docs", "/redoc", "/openapi.json", "/health"):
            assert _request(real, "GET", target)[0] == 200
        assert invoked == ["/docs", "/redoc", "/openapi.json", "/health"]


def test_payload_over_the_limit_is_413(gateway: Gateway) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.putrequest("POST", "/events")
        connection.putheader("Content-Length", str(MAX_PAYLOAD_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
    finally:
        connection.close()


def test_one_container_runs_one_invocation_at_a_time(gateway: Gateway) -> None:
    threads = {}

    def call(index: int) -> None:
        threads[index] = json.loads(_request(gateway, "GET", "/health")[2])["thread"]

    workers = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(threads) == 8 and len(set(threads.values())) == 1


def test_static_frontend_and_its_limits(gateway: Gateway) -> None:
    status, response, _ = _request(gateway, "GET", "/ui")
    assert status == 301 and response.getheader("Location") == "/ui/"
    status, response, body = _request(gateway, "GET", "/ui/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    status, response, _ = _request(gateway, "GET", "/ui/app.js")
    assert status == 200 and "javascript" in response.getheader("Content-Type", "")
    assert _request(gateway, "GET", "/ui/../secret.txt")[0] == 404
    assert _request(gateway, "GET", "/ui/%2e%2e/secret.txt")[0] == 404
    assert _request(gateway, "GET", "/ui/missing.css")[0] == 404
    assert _request(gateway, "POST", "/ui/index.html", body=b"x")[0] == 405


def test_config_lists_learners_with_tokens_the_api_accepts(
    gateway: Gateway, keys: tuple[str, str]
) -> None:
    status, _, body = _request(gateway, "GET", "/ui/config.json")
    assert status == 200
    config = json.loads(body)
    assert [learner["user_id"] for learner in config["learners"]] == ["u00001", "u00002"]
    verifier = TokenVerifier.from_public_key_pem(keys[1])
    for learner in config["learners"]:
        principal = verifier.verify(f"Bearer {learner['token']}")
        assert principal.subject == learner["user_id"]
        assert {role.value for role in principal.roles} == {"learner"}


def test_config_without_a_key_says_how_to_get_one(frontend: Path) -> None:
    with Gateway(_echo, port=0, frontend=frontend) as running:
        status, _, body = _request(running, "GET", "/ui/config.json")
    assert status == 404 and "--dev-private-key" in json.loads(body)["message"]


def test_port_is_released_on_stop(frontend: Path) -> None:
    first = Gateway(_echo, port=0, frontend=frontend).start()
    port = first.port
    first.stop()
    second = Gateway(_echo, port=port, frontend=frontend).start()
    try:
        assert second.port == port
    finally:
        second.stop()


def test_demo_learners_are_parsed_once_each() -> None:
    assert parse_learners(" u1, u2,,u1 ,u3") == ["u1", "u2", "u3"]


def test_demo_learners_without_a_key_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from learnrec_dev.cli import main

    assert main(["local", "gateway", "--port", "0", "--demo-learners", "u1"]) == 2
    assert "--dev-private-key" in capsys.readouterr().err


def test_the_access_log_names_the_resource_not_the_learner(
    frontend: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with Gateway(_echo, port=0, frontend=frontend, access_log=True, routes=ECHO_ROUTES) as running:
        assert _request(running, "GET", "/recommend/learner-8812?k=3")[0] == 200
        assert _request(running, "GET", "/ui/app.js")[0] == 200
    log = capfd.readouterr().err
    assert '"GET /recommend/{user_id} HTTP/1.1" 200' in log
    assert '"GET /ui/app.js HTTP/1.1" 200' in log
    assert "learner-8812" not in log
