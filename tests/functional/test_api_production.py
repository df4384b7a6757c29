"""The real Lambda handler configured as the stack configures it in AWS: JWT_ISSUER and
JWT_AUDIENCE enforced, and EMF metrics per function version that the canary alarms read.

The suite's ``api`` fixture, with the stage's issuer and audience in the environment
before the handler builds its context (once, at the first request).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functional.serving_harness import Api
from learnrec.data.dataset import Dataset
from learnrec.retrieval.index import VectorIndexError
from learnrec.serving.apigw import LambdaContext
from learnrec.serving.auth import issue_token
from learnrec.serving.telemetry import VERSION_ENV
from learnrec.stages import StageConfig

CONFIG = StageConfig.for_stage("staging")
CLAIMS = {"JWT_ISSUER": CONFIG.token_issuer, "JWT_AUDIENCE": CONFIG.token_audience}


@pytest.fixture(scope="module")
def claims_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CLAIMS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def api(claims_env: None, api: Api) -> Api:
    """The suite's api, built after (and so with) the stage's claims."""
    return api


def a_learner(small_dataset: Dataset) -> str:
    return str(small_dataset.interactions["user_id"].value_counts().index[0])


def token(api: Api, subject: str, **claims: Any) -> str:
    return issue_token(api.private_pem, subject, ["learner"], ttl_seconds=600, **claims)


def test_tokens_need_the_stages_issuer_and_audience(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    issuer, audience = CONFIG.token_issuer, CONFIG.token_audience
    path = f"/recommend/{user}"
    good = token(api, user, issuer=issuer, audience=audience)
    assert api.call("GET", path, token=good)[0] == 200
    refused = {
        "no claims": token(api, user),
        "no issuer": token(api, user, audience=audience),
        "no audience": token(api, user, issuer=issuer),
        "another issuer": token(api, user, issuer="https://elsewhere", audience=audience),
        "another stage's API": token(api, user, issuer=issuer, audience="learnrec-prod-api"),
    }
    for case, bad in refused.items():
        status, body = api.call("GET", path, token=bad)
        assert status == 401 and body["error"] == "unauthorized", case


def emf(out: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def test_metrics_carry_the_function_version_and_the_status_class(
    api: Api,
    small_dataset: Dataset,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VERSION_ENV, "12")
    user = a_learner(small_dataset)
    good = token(api, user, issuer=CONFIG.token_issuer, audience=CONFIG.token_audience)
    capsys.readouterr()

    recommender = api.context.model.get()

    class BrokenIndex:
        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise VectorIndexError("connection refused")

    real_index, recommender.index = recommender.index, BrokenIndex()
    try:
        assert api.call("GET", f"/recommend/{user}", token=good)[1]["fallback"] == "exact_retrieval"
    finally:
        recommender.index = real_index
    assert api.call("GET", f"/recommend/{user}")[0] == 401

    store = api.context.store

    def broken(*args: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(store, "learner_context", broken)
    assert api.call("GET", f"/recommend/{user}", token=good)[0] == 500
    # An event the handler cannot serve at all: Lambda reports an error, API Gateway a 502.
    with pytest.raises(RuntimeError):
        api.module.handler({"not": "an API Gateway event"}, LambdaContext())

    fallback, unauthorized, failed, crashed = emf(capsys.readouterr().out)
    for document in (fallback, unauthorized, failed, crashed):
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "learnrec"
        assert directive["Dimensions"] == [["service"], ["service", "function_version"]]
        assert document["service"] == "api" and document["function_version"] == "12"
        assert document["http_responses_total"] == [1.0]
    assert fallback["http_responses_2xx_total"] == [1.0]
    assert fallback["recommend_success_total"] == [1.0]
    assert fallback["recommend_fallback_exact_retrieval_total"] == [1.0]
    assert unauthorized["http_responses_4xx_total"] == [1.0]
    assert failed["http_responses_5xx_total"] == [1.0]
    assert crashed["http_responses_5xx_total"] == [1.0]
    assert "recommend_success_total" not in failed
