"""The API's dependencies: a caller is checked before a route runs, and each piece of the
context can be replaced on its own through ``app.dependency_overrides``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

from learnrec.config import Settings
from learnrec.serving import deps
from learnrec.serving.api import create_app
from learnrec.serving.apigw import LambdaContext, http_response, rest_event
from learnrec.serving.auth import TokenVerifier, generate_key_pair, issue_token
from learnrec.serving.core import Assignment
from learnrec.serving.model_store import Pointer
from learnrec.serving.recommender import Recommendation, RecommendOptions, RecommendResult
from learnrec.storage import LearnerContext

KEYS = generate_key_pair()


def _no_context() -> Any:
    raise AssertionError("a route with every piece it uses overridden builds no context")


def _call(
    app: FastAPI,
    method: str,
    path: str,
    roles: tuple[str, ...] | None = None,
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """The status and body for a caller with ``roles`` (None: no token at all)."""
    headers = {}
    if roles is not None:
        headers["Authorization"] = f"Bearer {issue_token(KEYS[0], 'ada', list(roles))}"
    event = rest_event(method, path, query, headers=headers)
    handler: Any = Mangum(app, lifespan="off")
    response = http_response(handler(event, LambdaContext()))
    return response.status, json.loads(response.body)


class FakeStore:
    """The two calls the learner routes make, recorded."""

    def __init__(self) -> None:
        self.opted_out: list[str] = []

    def set_opt_out(self, user_id: str, opted_out: bool) -> None:
        self.opted_out.append(user_id)

    def learner_context(self, user_id: str) -> LearnerContext:
        return LearnerContext(None, None, [])


class FakeModels:
    def pointer(self) -> Pointer:
        return Pointer("v2", ("v1",))

    def versions(self) -> list[str]:
        return ["v1", "v2"]


class NoModel:
    """An active model store with no version yet."""

    version = None
    error = None

    def get(self) -> None:
        return None


class FakeRecommender:
    """Returns as many items as it is asked for."""

    def recommend(
        self, key: str | None, history: Any, profile: Any, options: RecommendOptions
    ) -> RecommendResult:
        items = [Recommendation(f"c{n}", 1.0 / n, n, "test") for n in range(1, options.k + 1)]
        return RecommendResult(items, "v1")


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def _app(store: FakeStore, settings: Settings | None = None) -> FastAPI:
    app = create_app(_no_context, docs=False, settings=settings)
    recommender = FakeRecommender()
    overrides: dict[Callable[..., Any], Callable[..., Any]] = {
        deps.token_verifier: lambda: TokenVerifier.from_public_key_pem(KEYS[1]),
        deps.catalog_store: lambda: store,
        deps.model_store: FakeModels,
        deps.active_model: NoModel,
        deps.user_keys: lambda: lambda user_id: f"hashed-{user_id}",
        deps.assignment: lambda: lambda key: (recommender, None, []),
        deps.metrics: lambda: lambda name, value, unit: None,
    }
    app.dependency_overrides.update(overrides)
    return app


def test_a_learner_acts_for_themself_only_and_the_route_never_runs_for_another(
    store: FakeStore,
) -> None:
    app = _app(store)
    assert _call(app, "POST", "/learners/ada/opt-out", ("learner",)) == (
        200,
        {"user_id": "ada", "opted_out": True},
    )
    status, body = _call(app, "POST", "/learners/bob/opt-out", ("learner",))
    assert (status, body["detail"]) == (403, "token is for another learner")
    status, body = _call(app, "POST", "/learners/bob/opt-out")
    assert (status, body["error"]) == (401, "unauthorized")
    assert _call(app, "POST", "/learners/bob/opt-out", ("service",))[0] == 200
    assert store.opted_out == ["hashed-ada", "hashed-bob"]  # the refused calls wrote nothing


def test_admin_routes_need_the_admin_role(store: FakeStore) -> None:
    app = _app(store)
    status, body = _call(app, "GET", "/admin/models", ("service",))
    assert (status, body["detail"]) == (403, "admin role required")
    assert _call(app, "GET", "/admin/models", ("admin",)) == (
        200,
        {"active": "v2", "previous": ["v1"], "versions": ["v1", "v2"]},
    )


def test_reads_that_are_not_personal_need_a_role(store: FakeStore) -> None:
    app = _app(store)
    # FakeStore cannot answer trending: a route that ran would be a 500, not this 403.
    status, body = _call(app, "GET", "/trending", roles=())  # valid, but grants nothing
    assert (status, body["detail"]) == (403, "learner, service or admin role required")


def test_a_list_without_k_has_the_configured_length(store: FakeStore) -> None:
    default = _app(store)
    assert len(_call(default, "GET", "/recommend/ada", ("learner",))[1]["items"]) == 10
    settings = Settings(top_k_ranking=3)
    configured = _app(store, settings)
    assert len(_call(configured, "GET", "/recommend/ada", ("learner",))[1]["items"]) == 3
    status, body = _call(configured, "GET", "/recommend/ada", ("learner",), {"k": "5"})
    assert status == 200 and len(body["items"]) == 5  # a k sent wins


def test_the_context_is_built_once_and_its_pieces_are_read_per_request() -> None:
    built: list[int] = []

    class Context:
        def __init__(self, n: int) -> None:
            self.store = FakeStore()
            self.n = n

    def factory() -> Any:
        built.append(1)
        return Context(len(built))

    app = create_app(factory, docs=False)
    request: Any = type("Request", (), {"app": app})()
    first = asyncio.run(deps.serving_context(request))
    assert asyncio.run(deps.serving_context(request)) is first and built == [1]
    replacement: Any = FakeStore()
    first.store = replacement  # a test's failing store: the next request gets it
    context = asyncio.run(deps.serving_context(request))
    assert asyncio.run(deps.catalog_store(context)) is replacement


def test_experiment_assignment_is_the_contexts_own() -> None:
    assigned: list[str] = []

    class Context:
        def recommender_for(self, key: str) -> Assignment:
            assigned.append(key)
            return None, "control", []

    assign = asyncio.run(deps.assignment(Context()))  # type: ignore[arg-type]
    assert assign("k1") == (None, "control", []) and assigned == ["k1"]
