"""Experiments through the API: variants serve their model version and say so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functional.serving_harness import Api
from learnrec.events.experiments import Experiment, PinnedModels, parse_recommendation_id
from learnrec.serving.context import load_recommender


@pytest.fixture
def experiment(api: Api) -> Iterator[Api]:
    api.call("GET", "/health")  # builds the context
    ctx = api.context
    ctx.experiment = Experiment.parse('{"control": "v1", "treatment": "v2", "broken": "v9"}')
    ctx.pinned = PinnedModels(ctx.models.fetch, load_recommender)
    try:
        yield api
    finally:
        ctx.experiment, ctx.pinned = None, None


def test_each_variant_serves_its_model_and_names_it(experiment: Api) -> None:
    api = experiment
    seen: dict[str, str | None] = {}
    for n in range(60):
        user = f"ab-{n}"
        status, body = api.call("GET", f"/recommend/{user}", {"k": "3"}, token=api.token(user))
        assert status == 200, body
        attribution = parse_recommendation_id(body["recommendation_id"])
        assert attribution and attribution.variant == body["variant"]
        assert attribution.model_version == body["model_version"]
        seen[body["variant"]] = body["model_version"]
        if body["variant"] == "broken":  # its model is missing: the active one serves
            assert body["model_version"] == "v1" and "v9 unavailable" in body["degraded"][-1]
        # The same learner always gets the same variant.
        again = api.call("GET", f"/recommend/{user}", {"k": "3"}, token=api.token(user))[1]
        assert again["variant"] == body["variant"]
    assert seen == {"control": "v1", "treatment": "v2", "broken": "v1"}
