"""The API through the real Lambda handler, with API Gateway REST proxy events.

Everything is real except AWS itself, which is moto's in-process implementation of
Kinesis: the trained bundle from a small sample, the faiss index, SQLite, RS256 tokens.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from unit.opensearch_recorder import FakeCluster, make_client

from functional.serving_harness import STREAM, Api
from learnrec.config import Settings
from learnrec.data.dataset import Dataset
from learnrec.events.records import archived_event
from learnrec.pipeline.lifecycle import alias_swap
from learnrec.retrieval.index import VectorIndexError
from learnrec.schemas import Event
from learnrec.serving.auth import generate_key_pair, issue_token

# Inside the accepted window (the stage's retention back from now) whenever the tests run.
RECENT = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def a_learner(small_dataset: Dataset) -> str:
    counts = small_dataset.interactions["user_id"].value_counts()
    return str(counts.index[0])


def test_health_names_the_active_model(api: Api) -> None:
    status, body = api.call("GET", "/health")
    assert status == 200
    assert body["model_version"] == "v1" and body["status"] == "ok"


def test_recommend_returns_k_items_with_reasons(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    status, body = api.call("GET", f"/recommend/{user}", {"k": "5"}, token=api.token(user))
    assert status == 200, body
    assert body["model_version"] == "v1" and body["fallback"] is None
    assert body["recommendation_id"]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert all(i["reason"] and isinstance(i["score"], float) for i in body["items"])
    titles = dict(zip(small_dataset.items["content_id"], small_dataset.items["title"], strict=True))
    assert [i["title"] for i in body["items"]] == [titles[i["content_id"]] for i in body["items"]]


def test_auth_matrix(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    status, body = api.call("GET", f"/recommend/{user}")
    assert status == 401 and body["error"] == "unauthorized"
    status, body = api.call("GET", f"/recommend/{user}", token=api.token("someone-else"))
    assert status == 403 and body["error"] == "forbidden"
    status, _ = api.call("GET", f"/recommend/{user}", token=api.token("ops", "admin"))
    assert status == 200
    status, body = api.call("GET", f"/recommend/{user}", token=api.token(user, ttl=-120))
    assert status == 401
    other_private, _ = generate_key_pair()
    forged = issue_token(other_private, user, ["learner"])  # signed by a key we don't trust
    assert api.call("GET", f"/recommend/{user}", token=forged)[0] == 401
    status, body = api.call("GET", "/admin/models", token=api.token(user))
    assert status == 403


@pytest.mark.parametrize("k", ["0", "101", "ten"])
def test_bad_k_is_a_clear_422(api: Api, small_dataset: Dataset, k: str) -> None:
    user = a_learner(small_dataset)
    status, body = api.call("GET", f"/recommend/{user}", {"k": k}, token=api.token(user))
    assert status == 422
    assert body["error"] == "invalid request" and body["detail"][0]["field"] == "query.k"


@pytest.mark.parametrize(
    ("name", "value"),
    [("levels", "99"), ("levels", "0"), ("include_topics", "x" * 65), ("exclude_ids", "")],
)
def test_filters_are_bounded_by_what_the_catalog_allows(
    api: Api, small_dataset: Dataset, name: str, value: str
) -> None:
    user = a_learner(small_dataset)
    status, body = api.call("GET", f"/recommend/{user}", {name: value}, token=api.token(user))
    assert status == 422, body
    assert body["detail"][0]["field"] == f"query.{name}.0", body
    levels = {"levels": ["1", "5"]}
    assert api.call("GET", f"/recommend/{user}", levels, token=api.token(user))[0] == 200


def test_a_token_without_roles_reads_nothing(api: Api, small_dataset: Dataset) -> None:
    item = str(small_dataset.items["content_id"].iloc[0])
    nobody = issue_token(api.private_pem, "u-nobody", [])
    for path in ("/trending", f"/similar/{item}", "/recommend/u-nobody"):
        status, body = api.call("GET", path, token=nobody)
        assert status == 403 and body["detail"] == "learner, service or admin role required"
    assert api.call("GET", "/trending", token=api.token("u-nobody"))[0] == 200


def test_api_docs_are_served_only_where_enabled(api: Api) -> None:
    from mangum import Mangum

    from learnrec.serving.api import create_app
    from learnrec.serving.apigw import LambdaContext, rest_event

    # Locally (not in Lambda) they are on by default, and need no token.
    assert api.call("GET", "/openapi.json")[0] == 200
    assert Settings().docs_enabled
    assert not Settings(aws_lambda_function_name="learnrec-dev-api").docs_enabled
    assert Settings(aws_lambda_function_name="learnrec-dev-api", api_docs=True).docs_enabled

    def no_context() -> Any:
        raise RuntimeError("not needed")

    closed = create_app(no_context, docs=False)
    handler = Mangum(closed, lifespan="off")
    lambda_context: Any = LambdaContext()  # Mangum types its own protocol
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        response = handler(rest_event("GET", path), lambda_context)
        assert response["statusCode"] == 404, path
    # The spec is still built for docs/API.md and the gateway's routes.
    opened = create_app(no_context, docs=True)
    assert closed.openapi()["paths"] == opened.openapi()["paths"]


def test_consumed_items_are_dropped_unless_asked_for(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    mine = set(small_dataset.interactions.query("user_id == @user")["content_id"])
    api.store.record_history(
        (
            api.hashed(user),
            cid,
            "complete",
            small_dataset.interactions["ts"].max().to_pydatetime(),
            4.0,
        )
        for cid in mine
    )
    _, body = api.call("GET", f"/recommend/{user}", {"k": "20"}, token=api.token(user))
    assert not {i["content_id"] for i in body["items"]} & mine
    _, body = api.call(
        "GET",
        f"/recommend/{user}",
        {"k": "20", "include_consumed": "true"},
        token=api.token(user),
    )
    assert {i["content_id"] for i in body["items"]} & mine


def test_topic_filter_and_fill_from_popular(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    topic = str(small_dataset.items["topics"].iloc[0][0])
    # include_consumed: this heavy learner has taken most of the small catalog already.
    query = {"k": "30", "include_topics": topic, "include_consumed": "true"}
    status, body = api.call("GET", f"/recommend/{user}", query, token=api.token(user))
    assert status == 200
    catalog = {r["content_id"]: r for r in small_dataset.items.to_dict(orient="records")}
    assert body["items"] and all(topic in catalog[i["content_id"]]["topics"] for i in body["items"])


def test_new_learner_with_a_profile_gets_personalised_results(api: Api) -> None:
    profile = {"user_id": "newcomer", "level": 1, "interests": ["python"], "goals": ["upskill"]}
    token = api.token("newcomer")
    status, _ = api.call("PUT", "/learners/newcomer/profile", body=profile, token=token)
    assert status == 200
    # Stored under the hashed id only: no store keeps a raw user id.
    assert api.store.get_learner("newcomer") is None
    assert api.store.get_learner(api.hashed("newcomer")) is not None
    status, body = api.call("GET", "/recommend/newcomer", {"k": "5"}, token=token)
    assert status == 200 and body["fallback"] is None and len(body["items"]) == 5


def test_new_catalog_item_is_recommendable_at_once(api: Api, small_dataset: Dataset) -> None:
    item = {"content_id": "brand-new", "title": "Brand new", "topics": ["fresh-topic"], "level": 2}
    admin = api.token("ops", "admin")
    status, body = api.call("PUT", "/admin/catalog", body=[item], token=admin)
    assert status == 200 and body["indexed"] == 1
    user = a_learner(small_dataset)
    _, body = api.call(
        "GET", f"/recommend/{user}", {"include_topics": "fresh-topic"}, token=api.token(user)
    )
    assert [i["content_id"] for i in body["items"]] == ["brand-new"]


def test_a_new_catalog_item_reaches_a_learner_of_its_topic_marked_as_new(api: Api) -> None:
    item = {
        "content_id": "orbits-1",
        "title": "Orbits",
        "topics": ["orbital-mechanics"],
        "level": 2,
    }
    admin = api.token("ops", "admin")
    status, _ = api.call("PUT", "/admin/catalog", body=[item], token=admin)
    assert status == 200
    profile = {"user_id": "explorer", "level": 2, "interests": ["orbital-mechanics"]}
    token = api.token("explorer")
    assert api.call("PUT", "/learners/explorer/profile", body=profile, token=token)[0] == 200
    status, body = api.call("GET", "/recommend/explorer", {"k": "4"}, token=token)
    assert status == 200 and len(body["items"]) == 4
    reasons = {i["content_id"]: i["reason"] for i in body["items"]}
    assert reasons.get("orbits-1") == "New in orbital-mechanics"


def test_events_batch_goes_to_kinesis_with_per_event_results(
    api: Api, small_dataset: Dataset
) -> None:
    user = a_learner(small_dataset)
    good = {
        "user_id": user,
        "content_id": "c00001",
        "event_type": "click",
        "ts": RECENT,
    }
    bad = {**good, "event_type": "watch"}
    status, body = api.call("POST", "/events", body=[good, bad], token=api.token(user))
    assert status == 202
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert body["results"][1]["errors"][0]["field"] == "event_type"
    # No event_id sent: the response names the derived id the ingest function stores.
    assert body["results"][0]["event_id"]
    kinesis = boto3.client("kinesis")
    shard = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]["Shards"][0]
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    sent = [json.loads(r["Data"]) for r in records]
    # The stream holds the event as the archive will: every id hashed, the id it is
    # stored under (the one the response named) already derived.
    assert sent[-1] == {
        "stored": {
            **archived_event(Event.model_validate(good), api.hashed),
            "event_id": body["results"][0]["event_id"],
        }
    }
    assert user not in records[-1]["Data"].decode()
    assert records[-1]["PartitionKey"] == api.hashed(user)
    assert user not in {r["PartitionKey"] for r in records}  # partition keys are hashed


def test_events_are_checked_for_ownership_and_shape(api: Api) -> None:
    event = {"user_id": "a", "content_id": "c1", "event_type": "view", "ts": RECENT}
    assert api.call("POST", "/events", body=event, token=api.token("b"))[0] == 403
    assert api.call("POST", "/events", body=event, token=api.token("svc", "service"))[0] == 202
    status, body = api.call("POST", "/events", body="{not json", token=api.token("a"))
    assert status == 400 and "JSON" in body["detail"]


def test_bad_events_get_a_per_event_error_and_good_ones_still_go(api: Api) -> None:
    good = {"user_id": "a", "content_id": "c1", "event_type": "view", "ts": RECENT}
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    batch = [
        good,
        {**good, "value": "high"},
        {**good, "event_type": "teleport"},
        {**good, "ts": future},
        {**good, "context": {"blob": "x" * 20_000}},
        {**good, "ts": RECENT.removesuffix("Z")},  # no time zone
        [good],
    ]
    status, body = api.call("POST", "/events", body=batch, token=api.token("a"))
    assert status == 202 and body["accepted"] == 1 and body["rejected"] == 6
    fields = [[e["field"] for e in r["errors"]] for r in body["results"]]
    assert fields == [[], ["value"], ["event_type"], ["ts"], ["(body)"], ["ts"], ["(body)"]]
    assert "in the future" in body["results"][3]["errors"][0]["message"]
    assert "bytes" in body["results"][4]["errors"][0]["message"]
    status, body = api.call("POST", "/events", body=batch[1:], token=api.token("a"))
    assert status == 400 and body["accepted"] == 0
    status, body = api.call("POST", "/events", body=[good] * 501, token=api.token("a"))
    assert status == 400 and "500" in body["detail"]
    huge = json.dumps([{**good, "context": {"b": "x" * 16_000}}] * 520)
    status, body = api.call("POST", "/events", body=huge, token=api.token("a"))
    assert status == 413


def test_index_failure_degrades_to_an_exact_search(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    recommender = api.context.model.get()

    class BrokenIndex:
        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise VectorIndexError("connection refused")

    query = {"include_consumed": "true"}
    status, healthy = api.call("GET", f"/recommend/{user}", query, token=api.token(user))
    assert status == 200 and healthy["fallback"] is None
    real, recommender.index = recommender.index, BrokenIndex()
    try:
        status, body = api.call("GET", f"/recommend/{user}", query, token=api.token(user))
    finally:
        recommender.index = real
    assert status == 200 and body["fallback"] == "exact_retrieval" and len(body["items"]) == 10
    assert "index failed" in body["degraded"][0]
    # The bundle's items, searched exactly: the small catalog's faiss search is exact too.
    assert [i["content_id"] for i in body["items"]] == [i["content_id"] for i in healthy["items"]]


def test_ranker_failure_degrades_to_retrieval_order(api: Api, small_dataset: Dataset) -> None:
    user = a_learner(small_dataset)
    bundle = api.context.model.get().bundle

    class BrokenRanker:
        def score(self, features: Any) -> Any:
            raise RuntimeError("bad model file")

    real, bundle.ranker = bundle.ranker, BrokenRanker()
    try:
        status, body = api.call("GET", f"/recommend/{user}", token=api.token(user))
    finally:
        bundle.ranker = real
    assert status == 200 and body["fallback"] == "retrieval_order" and body["items"]


def test_model_versions_promote_and_rollback(api: Api) -> None:
    admin = api.token("ops", "admin")
    status, body = api.call("GET", "/admin/models", token=admin)
    assert status == 200 and body["active"] == "v1" and body["versions"] == ["v1", "v2"]
    assert api.call("POST", "/admin/models/v2/promote", token=admin)[1]["active"] == "v2"
    assert api.call("POST", "/admin/models/rollback", token=admin)[1]["active"] == "v1"
    assert api.call("POST", "/admin/models/v9/promote", token=admin)[0] == 404


def test_promote_and_rollback_move_the_opensearch_alias_with_the_pointer(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias = "learnrec-items"
    cluster = FakeCluster(aliases={alias: {f"{alias}-v1"}})
    for version in ("v1", "v2"):
        cluster.indices[f"{alias}-{version}"], cluster.docs[f"{alias}-{version}"] = {}, {}
    settings = Settings(vector_index="opensearch", opensearch_endpoint="https://search.test")
    monkeypatch.setattr(api.context, "index_alias", alias_swap(settings, make_client(cluster)))
    admin = api.token("ops", "admin")
    assert api.call("POST", "/admin/models/v2/promote", token=admin)[1]["active"] == "v2"
    assert cluster.aliases == {alias: {f"{alias}-v2"}}
    assert [(r.method, r.path) for r in cluster.requests] == [
        ("GET", f"/_alias/{alias}"),
        ("POST", "/_aliases"),
    ]
    assert api.call("POST", "/admin/models/rollback", token=admin)[1]["active"] == "v1"
    assert cluster.aliases == {alias: {f"{alias}-v1"}}
    # The index service down: a 503 that says so, and both stay on v1.
    cluster.down = True
    status, body = api.call("POST", "/admin/models/v2/promote", token=admin)
    assert status == 503 and body["unavailable"] == "vector_index"
    assert "alias" in body["detail"] and "connection refused" not in body["detail"].lower()
    assert api.call("GET", "/admin/models", token=admin)[1]["active"] == "v1"
    assert cluster.aliases == {alias: {f"{alias}-v1"}}


def test_erasure_removes_profile_and_history(api: Api) -> None:
    token = api.token("leaver")
    profile = {"user_id": "leaver", "interests": ["design"]}
    api.call("PUT", "/learners/leaver/profile", body=profile, token=token)
    assert api.store.get_learner(api.hashed("leaver")) is not None
    now = datetime.now(UTC)
    api.store.record_history(
        (api.hashed("leaver"), f"c{n:05d}", "complete", now - timedelta(hours=n), 4.0)
        for n in range(1, 6)
    )
    assert api.call("GET", "/recommend/leaver", token=token)[1]["items"] != newcomer(api)
    status, body = api.call("DELETE", "/learners/leaver", token=token)
    assert status == 200 and body["erased"] is True and body["untracked"] is True
    assert api.store.get_learner(api.hashed("leaver")) is None
    # Served as a brand-new learner from now on, never from their past...
    status, body = api.call("GET", "/recommend/leaver", token=token)
    assert status == 200 and body["items"] == newcomer(api)
    # ...and untracked: their events are accepted, not recorded, not even streamed.
    event = {"user_id": "leaver", "content_id": "c00009", "event_type": "view", "ts": RECENT}
    status, body = api.call("POST", "/events", body=[event], token=token)
    assert status == 202 and body["results"][0]["recorded"] is False
    assert api.call("POST", "/learners/leaver/opt-out", token=token)[0] == 200
    assert api.store.get_learner(api.hashed("leaver")) is None  # no profile row comes back
    assert api.call("DELETE", "/learners/leaver", token=token)[1]["erased"] is False


def newcomer(api: Api) -> list[dict[str, Any]]:
    """What a learner never seen before (no profile, no history) is recommended."""
    learner = f"first-visit-{uuid.uuid4().hex[:8]}"
    body = api.call("GET", f"/recommend/{learner}", token=api.token(learner))[1]
    return list(body["items"])


def test_similar_items_and_unknown_item(api: Api, small_dataset: Dataset) -> None:
    token = api.token("u-any")
    item = str(small_dataset.items["content_id"].iloc[0])
    status, body = api.call("GET", f"/similar/{item}", {"k": "5"}, token=token)
    assert status == 200 and len(body["items"]) == 5
    assert item not in {i["content_id"] for i in body["items"]}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    status, body = api.call("GET", "/similar/no-such-item", token=token)
    assert status == 404 and "no-such-item" in body["detail"]
    assert api.call("GET", f"/similar/{item}")[0] == 401


def test_trending_counts_recent_learners(api: Api) -> None:
    now = datetime.now(UTC)
    api.store.record_history(
        (f"t{n}", "c00007", "view", now - timedelta(hours=n), 1.0) for n in range(3)
    )
    api.store.record_history([("t9", "c00008", "view", now - timedelta(days=30), 1.0)])
    status, body = api.call("GET", "/trending", {"k": "3", "days": "7"}, token=api.token("x"))
    assert status == 200 and body["source"] == "recent_engagement"
    assert body["items"][0]["content_id"] == "c00007" and body["items"][0]["score"] == 3.0
    assert "c00008" not in {i["content_id"] for i in body["items"]}


def test_opted_out_learner_gets_non_personalised_results(api: Api) -> None:
    token = api.token("private-person")
    api.call(
        "PUT", "/learners/private-person/profile", body={"user_id": "private-person"}, token=token
    )
    assert api.call("POST", "/learners/private-person/opt-out", token=token)[0] == 200
    assert api.store.is_opted_out(api.hashed("private-person"))
    status, body = api.call("GET", "/recommend/private-person", token=token)
    assert status == 200 and body["fallback"] == "popularity"
    assert body["degraded"] == ["learner opted out"] and len(body["items"]) == 10
