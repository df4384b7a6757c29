"""Every dependency failing, on every route it touches, through the real Lambda handler.

Each failure is injected into the running app's context the way it happens in AWS: the
database is a PostgreSQL server that refuses connections, the index raises whatever its
client raises, Kinesis is an endpoint that refuses connections or a stream moto does not
know, the model store is S3 behind an endpoint that refuses connections, the catalog's
index write fails. The table says, per route and failure, what an honest answer is: a
flagged degraded 200 where a useful answer exists, else 503 with ``Retry-After``, never a
500, and never the failure's internals (endpoints, account ids, paths, exception text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from functional.serving_harness import STREAM, Api
from learnrec.events.producer import KinesisEventSink
from learnrec.schemas import ContentItem
from learnrec.serving.model_store import S3ModelStore
from learnrec.storage import CatalogStore, make_engine

# What an injected failure's own text contains; none of it may reach a body.
SECRET_PATH = "/opt/learnrec/secret-path"
REFUSING = "127.0.0.1:9"  # the discard port: nothing listens, connections are refused
ACCOUNT = "123456789012"  # moto's account id, in its error messages and ARNs
INTERNALS = (SECRET_PATH, REFUSING, "127.0.0.1", ACCOUNT, "arn:", "Traceback", "http://")
FAST = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1, "mode": "standard"})

Injector = Callable[[Api], AbstractContextManager[None]]


@contextmanager
def database_down(api: Api) -> Iterator[None]:
    """A PostgreSQL URL where no server listens: psycopg's real OperationalError."""
    ctx = api.context
    engine = make_engine(
        f"postgresql+psycopg://postgres@{REFUSING}/test", connect_args={"connect_timeout": 1}
    )
    real, ctx.store = ctx.store, CatalogStore(engine)
    try:
        yield
    finally:
        ctx.store = real
        engine.dispose()


class ExplodingIndex:
    """An index whose client fails with something that is not a VectorIndexError."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def search(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError(f"shard missing under {SECRET_PATH}")

    def upsert(self, items: Any) -> None:
        raise ConnectionResetError(f"bulk to {REFUSING} reset, see {SECRET_PATH}")

    def __len__(self) -> int:
        return len(self.real)


@contextmanager
def index_raises(api: Api) -> Iterator[None]:
    recommender = api.context.model.get()
    real = recommender.index
    recommender.index = ExplodingIndex(real)
    try:
        yield
    finally:
        recommender.index = real


@contextmanager
def event_sink(api: Api, sink: KinesisEventSink) -> Iterator[None]:
    """The API sends its events to ``sink`` inside the block, to its own again after."""
    real, api.context.events = api.context.events, sink
    try:
        yield
    finally:
        api.context.events = real


@contextmanager
def kinesis_unreachable(api: Api) -> Iterator[None]:
    client = boto3.client("kinesis", endpoint_url=f"http://{REFUSING}", config=FAST)
    real = api.context.events
    with event_sink(api, KinesisEventSink(client, STREAM, real.hash_key if real else b"k")):
        yield


@contextmanager
def kinesis_stream_missing(api: Api) -> Iterator[None]:
    """moto answers ResourceNotFoundException, naming the stream's account."""
    real = api.context.events
    assert real is not None
    with event_sink(api, KinesisEventSink(real.client, "no-such-stream", real.hash_key)):
        yield


@contextmanager
def model_store_down(api: Api) -> Iterator[None]:
    """S3 behind an endpoint that refuses connections; the loaded model keeps serving."""
    client = boto3.client("s3", endpoint_url=f"http://{REFUSING}", config=FAST)
    store = S3ModelStore("learnrec-models", "models", client)
    ctx = api.context
    real_models, real_active = ctx.models, ctx.model.store
    ctx.models = ctx.model.store = store
    ctx.model._checked_at = None  # the next request re-reads the pointer, and fails
    try:
        yield
    finally:
        ctx.models, ctx.model.store = real_models, real_active
        ctx.model._checked_at = None
        ctx.model.get()
        ctx.model.error = None


FAILURES: dict[str, Injector] = {
    "database down": database_down,
    "index raises": index_raises,
    "kinesis unreachable": kinesis_unreachable,
    "kinesis stream missing": kinesis_stream_missing,
    "model store down": model_store_down,
}

NEW_ITEM = ContentItem(content_id="c-failure-new", title="Fresh", topics=["t1"], level=2)


@dataclass(frozen=True)
class Case:
    failure: str
    method: str
    path: str
    role: str  # "learner" (the path's learner), "service", "admin" or "" (no token)
    status: int
    # What the 200 says about it: "fallback" (popular items), "exact" (the bundle's items
    # searched exactly), "degraded", "health".
    flag: str | None = None
    unavailable: str | None = None  # the dependency a 503 names
    query: dict[str, str] | None = None
    body: Any = None


LEARNER = "u-failures"
# Timestamped at import: recent, as the ingest's retention bound requires of an event.
EVENT = {
    "user_id": LEARNER,
    "content_id": "c00001",
    "event_type": "click",
    "ts": datetime.now(UTC).isoformat(),
}

TABLE = [
    # The database down: reads that have a useful answer without it degrade, flagged.
    Case("database down", "GET", "/health", "", 503, unavailable="database"),
    Case("database down", "GET", f"/recommend/{LEARNER}", "learner", 200, flag="fallback"),
    Case("database down", "GET", "/trending", "learner", 200, flag="degraded"),
    Case("database down", "GET", "/similar/{item}", "learner", 200),
    Case(
        "database down",
        "PUT",
        f"/learners/{LEARNER}/profile",
        "learner",
        503,
        unavailable="database",
        body={"user_id": LEARNER, "interests": ["t1"]},
    ),
    Case("database down", "DELETE", f"/learners/{LEARNER}", "learner", 503, unavailable="database"),
    Case(
        "database down",
        "POST",
        f"/learners/{LEARNER}/opt-out",
        "learner",
        503,
        unavailable="database",
    ),
    Case("database down", "POST", "/events", "service", 202, body=[EVENT]),
    Case(
        "database down",
        "PUT",
        "/admin/catalog",
        "admin",
        503,
        unavailable="database",
        body=[NEW_ITEM.model_dump(mode="json")],
    ),
    Case("database down", "GET", "/admin/models", "admin", 200),
    # The index failing with any exception: an exact search over the bundle's items, and
    # a catalog write undone.
    Case("index raises", "GET", f"/recommend/{LEARNER}", "learner", 200, flag="exact"),
    Case("index raises", "GET", "/similar/{item}", "learner", 200, flag="exact"),
    Case("index raises", "GET", "/health", "", 200),
    Case(
        "index raises",
        "PUT",
        "/admin/catalog",
        "admin",
        503,
        unavailable="vector_index",
        body=[NEW_ITEM.model_dump(mode="json")],
    ),
    # Kinesis: the producer is told to retry, not that its events were rejected.
    Case(
        "kinesis unreachable", "POST", "/events", "service", 503, None, "event_stream", body=[EVENT]
    ),
    Case(
        "kinesis stream missing",
        "POST",
        "/events",
        "learner",
        503,
        None,
        "event_stream",
        body=EVENT,
    ),
    Case("kinesis unreachable", "GET", f"/recommend/{LEARNER}", "learner", 200),
    # The model store: the loaded model keeps serving; admin reads and moves are 503s.
    Case("model store down", "GET", "/health", "", 200, flag="health"),
    Case("model store down", "GET", f"/recommend/{LEARNER}", "learner", 200),
    Case("model store down", "GET", "/admin/models", "admin", 503, unavailable="model_store"),
    Case("model store down", "POST", "/admin/models/v2/promote", "admin", 503, None, "model_store"),
    Case("model store down", "POST", "/admin/models/rollback", "admin", 503, None, "model_store"),
]


def _token(api: Api, role: str) -> str | None:
    if not role:
        return None
    return api.token(LEARNER, role) if role != "learner" else api.token(LEARNER)


def _call(api: Api, case: Case, item: str) -> tuple[int, dict[str, str], Any, str]:
    """Status, headers, parsed body and raw body text of one request."""
    from learnrec.serving.apigw import LambdaContext, http_response, rest_event

    headers = {"Content-Type": "application/json"}
    token = _token(api, case.role)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    raw = None if case.body is None else json.dumps(case.body)
    event = rest_event(case.method, case.path.replace("{item}", item), case.query, headers, raw)
    response = http_response(api.module.handler(event, LambdaContext()))
    text = response.body.decode() if isinstance(response.body, bytes) else response.body
    return response.status, dict(response.headers), json.loads(text), text


@pytest.fixture
def item(api: Api) -> str:
    assert api.call("GET", "/health")[0] == 200  # the context is built at the first request
    recommender = api.context.model.get()
    return str(recommender.bundle.popular[0])


@pytest.mark.parametrize("case", TABLE, ids=lambda c: f"{c.failure}: {c.method} {c.path}")
def test_each_failure_answers_honestly(api: Api, item: str, case: Case) -> None:
    with FAILURES[case.failure](api):
        status, headers, body, text = _call(api, case, item)
    assert status == case.status, body
    assert status != 500
    for secret in INTERNALS:
        assert secret not in text, (secret, text)
    if status == 503:
        assert int(headers["retry-after"]) >= 1
        named = body.get("unavailable") or next(iter(body.get("not_ready", {})), None)
        assert named == case.unavailable, body
    if case.flag == "fallback":
        assert body["fallback"] == "popularity" and body["degraded"], body
        assert body["items"], "popular items are the useful answer"
    elif case.flag == "exact":
        assert body["fallback"] == "exact_retrieval" and body["degraded"][0] == "index failed"
        assert body["items"], "the exact search is the useful answer"
    elif case.flag == "degraded":
        assert body["degraded"] and body["items"], body
    elif case.flag == "health":
        assert body["status"] == "degraded" and body["dependencies"]["model"] != "ok", body
    elif status == 200 and "fallback" in body and case.failure != "index raises":
        assert body["fallback"] is None, body  # untouched by this failure


def test_health_names_the_down_database_only(api: Api, item: str) -> None:
    with database_down(api):
        status, headers, body, _ = _call(api, Case("", "GET", "/health", "", 503), "")
    assert status == 503 and headers["retry-after"] == "5"
    assert body["dependencies"] == {
        "database": "the database cannot be reached; retrying",
        "model": "ok",
    }
    status, _, body, _ = _call(api, Case("", "GET", "/health", "", 200), "")
    assert status == 200 and body["dependencies"] == {"database": "ok", "model": "ok"}


def test_a_catalog_update_whose_index_write_fails_changes_nothing(api: Api, item: str) -> None:
    recommender = api.context.model.get()
    before = len(recommender.index)
    admin = api.token("ops", "admin")
    changed = api.store.get_item("c00001")
    assert changed is not None
    renamed = changed.model_copy(update={"title": "Renamed while the index fails"})
    body = [NEW_ITEM.model_dump(mode="json"), renamed.model_dump(mode="json")]
    with index_raises(api):
        status, answer = api.call("PUT", "/admin/catalog", body=body, token=admin)
    assert status == 503 and answer["unavailable"] == "vector_index", answer
    # Rolled back: neither the new item nor the change is in the database or the bundle.
    assert api.store.get_item(NEW_ITEM.content_id) is None
    assert api.store.get_item("c00001") == changed
    assert recommender.bundle.catalog.get(NEW_ITEM.content_id) is None
    assert len(recommender.index) == before
    # The same request once the index is back: both sides take it.
    status, answer = api.call("PUT", "/admin/catalog", body=body, token=admin)
    assert status == 200 and answer == {"upserted": 2, "indexed": 2}
    assert api.store.get_item(NEW_ITEM.content_id) == NEW_ITEM
    assert api.store.get_item("c00001") == renamed


def test_a_catalog_update_with_the_database_down_leaves_the_index_alone(
    api: Api, item: str
) -> None:
    recommender = api.context.model.get()
    before = len(recommender.index)
    other = NEW_ITEM.model_copy(update={"content_id": "c-failure-db"})
    with database_down(api):
        status, answer = api.call(
            "PUT",
            "/admin/catalog",
            body=[other.model_dump(mode="json")],
            token=api.token("o", "admin"),
        )
    assert status == 503 and answer["not_ready"] == {"database": answer["detail"]}
    assert len(recommender.index) == before
    assert recommender.bundle.catalog.get(other.content_id) is None


def test_some_events_refused_by_the_stream_are_202_with_a_retry_hint(api: Api, item: str) -> None:
    """Kinesis refusing part of a request: the rest is taken; the refused ones say retry."""
    real = api.context.events
    assert real is not None
    calls = {"n": 0}

    class HalfThrottled:
        """moto's Kinesis, refusing every second record as a hot shard does."""

        def put_records(self, **kwargs: Any) -> Any:
            calls["n"] += 1
            response = real.client.put_records(**kwargs)
            for position, entry in enumerate(response["Records"]):
                if position % 2:
                    entry.clear()
                    entry["ErrorCode"] = "ProvisionedThroughputExceededException"
                    entry["ErrorMessage"] = f"Rate exceeded for stream under account {ACCOUNT}"
            response["FailedRecordCount"] = len(response["Records"]) // 2
            return response

    throttled = KinesisEventSink(HalfThrottled(), STREAM, real.hash_key, max_attempts=1)
    with event_sink(api, throttled):
        events = [{**EVENT, "content_id": f"c0000{i}"} for i in range(1, 5)]
        status, body = api.call("POST", "/events", body=events, token=api.token("s", "service"))
    assert status == 202 and body["accepted"] == 2 and body["rejected"] == 2, body
    refused = [r for r in body["results"] if not r["accepted"]]
    assert all("send it again" in r["errors"][0]["message"] for r in refused)
    assert ACCOUNT not in json.dumps(body)
