"""docs/API.md is generated from the served app's OpenAPI spec and kept up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from learnrec.serving.openapi_doc import gateway_routes, openapi_spec, render_markdown
from learnrec_dev.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_committed_api_reference_matches_the_spec() -> None:
    committed = (REPO / "docs" / "API.md").read_text()
    assert committed == render_markdown(openapi_spec()), (
        "docs/API.md is stale: run learnrec docs api --out docs/API.md"
    )


def test_every_operation_is_documented_with_a_valid_example() -> None:
    spec = openapi_spec()
    text = render_markdown(spec)
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in text
    # Every JSON example block parses, and request bodies are valid JSON too.
    for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.S):
        json.loads(block)
    for body in re.findall(r"-d '(.*)'", text):
        json.loads(body)


def test_example_event_passes_the_event_schema() -> None:
    from learnrec.schemas import Event

    text = render_markdown(openapi_spec())
    section = text.split("### `POST /events`")[1].split("###")[0]
    body = json.loads(re.findall(r"-d '(.*)'", section)[0])
    Event.model_validate(body)


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "API.md"
    out.write_text("old\n")
    assert main(["docs", "api", "--out", str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["docs", "api", "--out", str(out)]) == 0
    assert main(["docs", "api", "--out", str(out), "--check"]) == 0


def test_gateway_routes_cover_the_spec_and_the_docs_pages() -> None:
    spec = openapi_spec()
    routes = {(r.path, r.method) for r in gateway_routes(spec)}
    expected = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    assert expected | {("/docs", "GET"), ("/redoc", "GET"), ("/openapi.json", "GET")} == routes
    recommend = next(r for r in gateway_routes(spec) if r.path == "/recommend/{user_id}")
    assert recommend.path_params == ("user_id",)
    events = next(r for r in gateway_routes(spec) if r.path == "/events")
    assert events.has_body
