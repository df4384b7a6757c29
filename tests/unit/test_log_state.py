"""The API function's log keys last one request: the learner a request was for is on
that request's lines, and on no line of the next one."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from learnrec.config import get_settings
from learnrec.identity import hash_user_id
from learnrec.serving.apigw import LambdaContext, rest_event
from learnrec.serving.auth import generate_key_pair, issue_token

REPO = Path(__file__).resolve().parents[2]
HASH_KEY = "log-state-key"


class Lines(logging.Handler):
    """Formats records as the function's own handler does, and keeps them."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The API function, with a database that cannot be reached (its folder is missing),
    so that requests log a warning each."""
    private_pem, public_pem = generate_key_pair()
    for name, value in {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'learnrec.db'}",
        "MODEL_STORE": str(tmp_path / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": HASH_KEY,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("JWT_SECRET_ID", "JWT_JWKS", "USER_ID_HASH_SECRET_ID", "KINESIS_STREAM_NAME"):
        monkeypatch.delenv(name, raising=False)
    package = logging.getLogger("learnrec")
    saved = (list(package.handlers), package.propagate, package.level)
    get_settings.cache_clear()
    try:
        spec = importlib.util.spec_from_file_location(
            "api_handler_log_state", REPO / "functions" / "api" / "handler.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.private_pem = private_pem  # type: ignore[attr-defined]
        yield module
    finally:
        get_settings.cache_clear()
        package.handlers, package.propagate = saved[0], saved[1]
        package.setLevel(saved[2])


def test_a_learners_key_is_on_their_requests_lines_and_not_on_the_next(
    handler_module: ModuleType,
) -> None:
    module = handler_module
    package = logging.getLogger("learnrec")
    # The app's own loggers write through the function's structured handler.
    assert set(module.logger.handlers) <= set(package.handlers)
    lines = Lines(module.logger.registered_formatter)
    package.addHandler(lines)
    token = issue_token(module.private_pem, "ada", ["learner"])
    headers = {"Authorization": f"Bearer {token}"}

    def call(path: str) -> int:
        response = module.handler(rest_event("GET", path, headers=headers), LambdaContext())
        status: int = response["statusCode"]
        return status

    assert call("/health") == 503  # builds the context: no learner to log yet
    lines.lines.clear()
    assert call("/recommend/ada") == 503  # no database and no model: nothing to serve
    first = [line for line in lines.lines if "recommend without the database" in line["message"]]
    assert first and all(line["user"] == hash_user_id("ada", HASH_KEY.encode()) for line in first)
    lines.lines.clear()
    assert call("/trending") == 503
    second = [line for line in lines.lines if "trending without the database" in line["message"]]
    assert second and all("user" not in line for line in second)
    package.removeHandler(lines)
