"""docs/API.md and the API Gateway's routes, both derived from the app's OpenAPI spec.

The spec that FastAPI generates from :func:`learnrec.serving.api.create_app` is the one
source: the Markdown reference is rendered from it (``learnrec docs api --out
docs/API.md``; a test fails when the committed file drifts from the spec), and the CDK
app builds its REST resources and request validation from :func:`gateway_routes`, so a
new route cannot be served by the app and silently missing from the gateway.

Examples are generated from the schemas (``examples``, ``default``, enums, formats), so
they stay valid as models change; no service is needed to build the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnrec.schemas import Event

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# Served by FastAPI but left out of the spec: the interactive docs and the spec itself
# (the function answers them only where Settings.docs_enabled says so).
UNDOCUMENTED_ROUTES = (("/docs", "get"), ("/redoc", "get"), ("/openapi.json", "get"))
# POST /events reads its body itself (one event or a list, validated item by item), so
# FastAPI cannot describe it; the reference shows the event schema instead.
BODY_SCHEMAS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("/events", "post"): ("one event, or a JSON array of up to 500", Event.model_json_schema()),
}
BASE_URL = "https://api.example.com/dev"
EXAMPLE_VALUES: dict[str, Any] = {
    "user_id": "u00001",
    "content_id": "c00042",
    "version": "20260131T020000Z",
    "model_version": "20260131T020000Z",
    "event_type": "click",
    "event_id": "e-5b1f3c",
    "session_id": "s-91ad",
    "context": {"page": "home"},
    "recommendation_id": "3f2c7a0e-1b5d-4c2e-9a63-6a1f0d2b8e11",
    "fallback": None,
    "degraded": [],
    "reason": "similar to c00017, which you completed",
    "source": "recent_engagement",
}


def openapi_spec() -> dict[str, Any]:
    """The served app's spec; building it never touches a database or a model."""
    from learnrec.serving.api import create_app

    def no_context() -> Any:
        raise RuntimeError("the spec is built without serving requests")

    spec: dict[str, Any] = create_app(no_context).openapi()
    return spec


@dataclass(frozen=True)
class Route:
    """One method on one path, as API Gateway needs it for request validation."""

    path: str
    method: str
    path_params: tuple[str, ...]
    required_query: tuple[str, ...]
    has_body: bool


def gateway_routes(spec: dict[str, Any]) -> list[Route]:
    """Every route the app serves, plus the docs routes the spec leaves out."""
    routes = []
    for path, operations in sorted(spec["paths"].items()):
        for method in HTTP_METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            params = operation.get("parameters", [])
            routes.append(
                Route(
                    path=path,
                    method=method.upper(),
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    required_query=tuple(
                        p["name"] for p in params if p["in"] == "query" and p.get("required")
                    ),
                    has_body="requestBody" in operation or (path, method) in BODY_SCHEMAS,
                )
            )
    routes.extend(
        Route(path, method.upper(), (), (), False) for path, method in UNDOCUMENTED_ROUTES
    )
    return routes


class _Schemas:
    """Resolves ``$ref`` against the spec's components and makes example values."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.components: dict[str, Any] = spec.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.components.get(name) or schema.get("$defs", {}).get(name, {})
        return schema

    def example(self, schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if depth > 6:
            return None
        for key in ("example", "default", "const"):
            if key in schema and schema[key] is not None:
                return schema[key]
        if schema.get("examples"):
            return schema["examples"][0]
        if name in EXAMPLE_VALUES:
            return EXAMPLE_VALUES[name]
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = [o for o in schema.get(key, []) if self.resolve(o).get("type") != "null"]
            if options:
                return self.example(options[0], name, depth + 1)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return {
                key: self.example(value, key, depth + 1)
                for key, value in schema.get("properties", {}).items()
            }
        if kind == "array":
            return [self.example(schema.get("items", {}), name, depth + 1)]
        return _scalar_example(kind, schema.get("format"), name, schema)

    def type_name(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return str(schema["$ref"].rsplit("/", 1)[-1])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " or ".join(self.type_name(option) for option in schema[key])
        if schema.get("type") == "array":
            return f"array of {self.type_name(schema.get('items', {}))}"
        if "enum" in schema:
            return " \\| ".join(f"`{value}`" for value in schema["enum"])
        return str(schema.get("type", "any"))


def _scalar_example(kind: Any, fmt: Any, name: str, schema: dict[str, Any]) -> Any:
    if kind in {"integer", "number"}:
        low, high = schema.get("minimum", -float("inf")), schema.get("maximum", float("inf"))
        value = min(max(1, low), high)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if fmt == "date-time" or name in {"ts", "created"}:
        return "2026-01-31T12:00:00Z"
    if kind == "string":
        return name or "string"
    return None


def _constraints(schema: dict[str, Any]) -> str:
    labels = {
        "minimum": "≥",
        "maximum": "≤",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
        "minLength": "min length",
        "maxLength": "max length",
        "maxItems": "at most items:",
    }
    parts = [f"{label} {schema[key]}" for key, label in labels.items() if key in schema]
    if "default" in schema:
        parts.append(f"default `{json.dumps(schema['default'])}`")
    return ", ".join(parts)


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False), "```", ""]


def _curl(path: str, method: str, params: list[dict[str, Any]], body: Any, auth: bool) -> str:
    url_path = path
    for param in params:
        if param["in"] == "path":
            value = EXAMPLE_VALUES.get(param["name"], param["name"])
            url_path = url_path.replace("{" + param["name"] + "}", str(value))
    query = "&".join(
        f"{p['name']}={p['schema']['default']}"
        for p in params
        if p["in"] == "query" and "default" in p.get("schema", {}) and p["name"] == "k"
    )
    url = f"{BASE_URL}{url_path}" + (f"?{query}" if query else "")
    lines = [f"curl -X {method.upper()} '{url}'"]
    if auth:
        lines.append('  -H "Authorization: Bearer $TOKEN"')
    if body is not None:
        lines.append("  -H 'Content-Type: application/json'")
        lines.append(f"  -d '{json.dumps(body, ensure_ascii=False)}'")
    return " \\\n".join(lines)


def _operation(schemas: _Schemas, path: str, method: str, operation: dict[str, Any]) -> list[str]:
    params = [p for p in operation.get("parameters", []) if p["in"] != "header"]
    auth = any(p["name"] == "authorization" for p in operation.get("parameters", []))
    out = [f"### `{method.upper()} {path}`", ""]
    if operation.get("description"):
        out += [operation["description"].strip(), ""]
    out += ["Needs a bearer token." if auth else "No token needed.", ""]
    if params:
        out += ["| parameter | in | type | required | constraints |", "|---|---|---|---|---|"]
        for param in params:
            schema = param.get("schema", {})
            out.append(
                f"| `{param['name']}` | {param['in']} | {schemas.type_name(schema)} | "
                f"{'yes' if param.get('required') else 'no'} | {_constraints(schema)} |"
            )
        out.append("")
    body = None
    if "requestBody" in operation:
        content = operation["requestBody"].get("content", {}).get("application/json", {})
        schema = content.get("schema", {})
        out += [f"Request body: {schemas.type_name(schema)}", ""]
        body = schemas.example(schema)
    elif (path, method) in BODY_SCHEMAS:
        what, schema = BODY_SCHEMAS[(path, method)]
        out += [f"Request body: {what}.", ""]
        body = _Schemas({"components": {"schemas": schema.get("$defs", {})}}).example(schema)
    out += ["Example:", "", "```bash", _curl(path, method, params, body, auth), "```", ""]
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {}).get("application/json", {})
        if status.startswith("2") and "schema" in content:
            schema = content["schema"]
            out += [f"Response `{status}` ({schemas.type_name(schema)}):", ""]
            out += _json_block(schemas.example(schema))
    return out


INTRODUCTION = """\
Generated from the OpenAPI spec of `learnrec.serving.api.create_app` by
`learnrec docs api --out docs/API.md`; do not edit by hand (a test compares the two).
Where a stage enables them (`API_DOCS=true`; on by default locally, off in AWS), the
live spec is served at `/openapi.json` and browsable at `/docs` and `/redoc`.

Every route but `/health` needs an RS256 bearer token (`Authorization: Bearer <jwt>`)
that carries `iat` and lives at most 24 hours (`exp - iat`, `JWT_MAX_LIFETIME_S`) and
at least one role; `/admin/*` needs the `admin` role, a learner's routes need that
learner's token or the service or admin role. Errors are JSON,
`{"error": "...", "detail": ...}`, with the matching 4xx: `401` no or bad token, `403`
not allowed, `404` unknown id or route, `422` invalid input (the detail lists each
field, query parameters included, and what is wrong with it). API Gateway answers `429`
when the stage's throttling limit is hit and `400` when a request fails its validation
before reaching the function.

A failing dependency is never a `500`. Where a useful answer exists without it the
response is a `200` that says so: a recommendation served by a degraded path (no model,
index, ranker or database) names it in `fallback` and `degraded`, and `/trending` in
`degraded`. Otherwise the answer is `503` with `Retry-After` and `unavailable` naming
the dependency (`database`, `event_stream`, `vector_index`, `model_store`): nothing
was changed, send the request again. `POST /events` is `503` when the event stream takes
none of the events, and `PUT /admin/catalog` writes the database and the item index
together or neither. While something the API needs is not there at start-up (JWT keys a
fresh stage has not been bootstrapped with, an unreachable database), every route,
`/health` included, answers `503` with `Retry-After` and `not_ready`, which names each
missing dependency and how to fix it. `/health` lists its dependencies by name
(`dependencies`), `503` while the database is down. Bodies never carry exception text,
endpoints, account ids or file paths; the function's log has the detail.

Examples use `$TOKEN` (for development: `learnrec auth token --private-key
build/keys/private.pem --sub u00001`) and a placeholder base URL; the deployed one is
the stack output `ApiUrl`. Event fields are described in [EVENTS.md](EVENTS.md).
"""


def render_markdown(spec: dict[str, Any]) -> str:
    schemas = _Schemas(spec)
    info = spec.get("info", {})
    out = [f"# {info.get('title', 'API')} HTTP API (version {info.get('version', '?')})", ""]
    out += [INTRODUCTION]
    toc, body = [], []
    for path, operations in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in operations:
                operation = operations[method]
                anchor = f"{method} {path}"
                toc.append(f"- `{anchor}`: {operation.get('summary', '')}")
                body += _operation(schemas, path, method, operation)
    out += ["## Routes", "", *toc, "", "## Reference", "", *body]
    return "\n".join(out).rstrip() + "\n"


def _docs_api(args: argparse.Namespace) -> int:
    text = render_markdown(openapi_spec())
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run learnrec docs api --out {args.out}")
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(str(args.out))
    return 0


def add_docs_command(commands: Any) -> None:
    """``learnrec docs api --out docs/API.md [--check]``."""
    docs = commands.add_parser("docs", help="generated documentation").add_subparsers(
        dest="action", required=True
    )
    api = docs.add_parser("api", help="the HTTP API reference from the OpenAPI spec")
    api.add_argument("--out", type=Path, default=Path("docs/API.md"))
    api.add_argument("--check", action="store_true", help="exit 1 if --out differs")
    api.set_defaults(func=_docs_api)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render_markdown(openapi_spec()))
