"""Fuzzes every operation of the API's own OpenAPI document through the real Lambda handler.

Schemathesis generates the requests from ``app.openapi()`` of the loaded handler module;
each one goes out as an API Gateway REST proxy event to ``handler(event, context)``, the
same path that ``Api.call`` drives. Whatever is sent, the API must answer with JSON, never
a 500, and every 4xx must carry an ``error`` key.

Each operation runs three ways: schema-valid requests with an admin token (so auth does
not stop them at the door), schema-violating requests with the same token, and
schema-valid requests without a valid token (the Authorization header absent, or any
string the document allows). Examples are few and derandomized, so CI sees the same
requests every run. The ``api`` fixture is module-scoped: what the fuzzer changes (erased
learners, catalog items, promotions) stays inside this module.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from schemathesis import BaseSchema, Case, GenerationMode

from functional.serving_harness import Api
from learnrec.data.dataset import Dataset
from learnrec.schemas import Event
from learnrec.serving.api import create_app
from learnrec.serving.apigw import LambdaContext, rest_event
from learnrec.serving.context import ServingContext

METHODS = ("get", "put", "post", "delete", "patch")
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def _no_context() -> ServingContext:
    raise AssertionError("collection only reads the OpenAPI document")


def _operations() -> list[tuple[str, str, bool]]:
    """(METHOD, path, has_inputs) of every operation, read at collection time.

    The handler module is not loaded here (Powertools keeps process-wide state); an app
    built by the same factory has the same document, and ``test_spec_is_the_handlers``
    checks that against the handler's own.
    """
    doc = create_app(_no_context).openapi()
    out = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                constrained = any(
                    p["in"] != "header" and _constrained(p["schema"])
                    for p in operation.get("parameters", [])
                )
                inputs = constrained or "requestBody" in operation or path == "/events"
                out.append((method.upper(), path, inputs))
    return out


def _constrained(schema: dict[str, Any]) -> bool:
    """Whether some value breaks the schema (any string fits a bare string path parameter)."""
    return schema.get("type") != "string" or bool(set(schema) - {"type", "title", "description"})


OPERATIONS = _operations()
MODES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path, inputs in OPERATIONS
    for mode in ("admin", "invalid", "anonymous")
    if inputs or mode != "invalid"  # no input that a value could break: nothing to negate
]


def _document(api: Api) -> dict[str, Any]:
    """The handler's OpenAPI document, with the body that ``POST /events`` reads.

    The route parses the body by hand (to answer per event), so FastAPI does not declare
    it; the fuzzer gets it from the same pydantic model the route validates with.
    """
    doc: dict[str, Any] = copy.deepcopy(api.module.app.openapi())
    events = doc["paths"].get("/events", {}).get("post")
    if events is not None and "requestBody" not in events:
        body = TypeAdapter(Event | list[Event]).json_schema(
            ref_template="#/components/schemas/{model}"
        )
        doc.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
        events["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return doc


@pytest.fixture(scope="module")
def schema(api: Api) -> BaseSchema:
    return schemathesis.openapi.from_dict(_document(api))


@pytest.fixture(scope="module")
def admin(api: Api) -> str:
    return api.token("fuzz-admin", "admin", ttl=3600)


@pytest.fixture(scope="module")
def known(api: Api, small_dataset: Dataset, admin: str) -> dict[str, list[str]]:
    """Ids that exist, so valid requests also reach past the not-found paths."""
    status, models = api.call("GET", "/admin/models", token=admin)
    assert status == 200, models
    return {
        "user_id": sorted({str(u) for u in small_dataset.interactions["user_id"]})[:20],
        "content_id": sorted(str(c) for c in small_dataset.items["content_id"])[:20],
        "version": list(models["versions"]),
    }


def _use_known(case: Case[Any], known: dict[str, list[str]], index: int) -> None:
    """Put a known id in each path parameter that has some (and in the body's same field)."""
    for name in list(case.path_parameters):
        values = known.get(name)
        if values:
            value = values[index % len(values)]
            case.path_parameters[name] = value
            if isinstance(case.body, dict) and name in case.body:
                case.body[name] = value


def test_spec_is_the_handlers(api: Api) -> None:
    doc = api.module.app.openapi()
    found = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert found == {(method, path) for method, path, _ in OPERATIONS}


@contextmanager
def _errors_logged() -> Iterator[list[str]]:
    """Tracebacks that Mangum logs when the app raises (the 500 body hides them)."""
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[0] is not None:
                found.append("".join(traceback.format_exception(*record.exc_info)))
            else:
                found.append(record.getMessage())

    handler = Collect(logging.ERROR)
    logger = logging.getLogger("mangum")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _request(case: Case[Any]) -> dict[str, Any]:
    """The case as API Gateway hands it over: decoded path, string query values, raw body."""
    sent = case.as_transport_kwargs(base_url="http://localhost")
    query: dict[str, list[str]] = {}
    for key, value in (sent.get("params") or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        query[key] = [_query_value(v) for v in values if v is not None]
    body: str | bytes | None = None
    if "json" in sent:
        body = json.dumps(sent["json"])
    elif sent.get("data") is not None:
        data = sent["data"]
        body = data if isinstance(data, str | bytes) else json.dumps(data)
    return {
        "method": case.method.upper(),
        "path": unquote(urlsplit(sent["url"]).path),
        "query": {k: v for k, v in query.items() if v},
        "headers": {k: str(v) for k, v in sent.get("headers", {}).items()},
        "body": body,
    }


def _shown(request: dict[str, Any], token: str | None) -> str:
    auth = {k: v for k, v in request["headers"].items() if k.lower() == "authorization"}
    if token:
        auth = {k: v.replace(token, "<admin token>") for k, v in auth.items()}
    return (
        f"{request['method']} {request['path']!r} query={request['query']!r} "
        f"body={request['body']!r} auth={auth!r}"
    )


# The one 4xx that is not {"error": ...}: POST /events answers per event, and a batch in
# which no event was accepted is a 400 with the same per-event results as a 202.
def _per_event_rejections(request: dict[str, Any], status: int, body: Any) -> bool:
    return (
        (request["method"], request["path"], status) == ("POST", "/events", 400)
        and isinstance(body, dict)
        and body.get("accepted") == 0
        and isinstance(body.get("results"), list)
    )


def _send(api: Api, request: dict[str, Any], token: str | None) -> None:
    event = rest_event(
        request["method"], request["path"], request["query"], request["headers"], request["body"]
    )
    with _errors_logged() as logged:
        response = api.module.handler(event, LambdaContext())
    status = response["statusCode"]
    raw = response.get("body") or ""
    text = (
        base64.b64decode(raw).decode(errors="replace") if response.get("isBase64Encoded") else raw
    )
    where = f"{_shown(request, token)}\n-> {status} {text[:2000]}\n" + "\n".join(logged)
    assert status != 500, where
    try:
        body = json.loads(text)
    except ValueError:
        pytest.fail(f"the body is not JSON: {where}")
    if 400 <= status < 500 and not _per_event_rejections(request, status, body):
        assert isinstance(body, dict) and "error" in body, where


@pytest.mark.parametrize(("method", "path", "mode"), MODES)
def test_operation_answers_json_and_never_500(
    api: Api,
    schema: BaseSchema,
    admin: str,
    known: dict[str, list[str]],
    method: str,
    path: str,
    mode: str,
) -> None:
    """``admin``/``invalid``: a valid admin token; ``anonymous``: the Authorization header
    as the document allows it (absent, or any string: never a valid token)."""
    operation = schema[path][method]
    token = None if mode == "anonymous" else admin
    generation = GenerationMode.NEGATIVE if mode == "invalid" else GenerationMode.POSITIVE
    fixed = {"authorization": f"Bearer {token}"} if token else None
    cases: st.SearchStrategy[Case[Any]] = operation.as_strategy(
        generation_mode=generation, headers=fixed
    )

    @EXAMPLES
    @given(case=cases, existing=st.none() | st.integers(min_value=0, max_value=1000))
    def fuzz(case: Case[Any], existing: int | None) -> None:
        if existing is not None and generation is GenerationMode.POSITIVE:
            _use_known(case, known, existing)
        _send(api, _request(case), token)

    fuzz()
