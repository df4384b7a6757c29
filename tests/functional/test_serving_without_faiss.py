"""The api function as deployed in AWS: OpenSearch for retrieval, and no faiss at all.

The api's Lambda package ships no faiss, so with ``VECTOR_INDEX=opensearch`` nothing on
its import or request path may import it. The handler runs in a fresh interpreter whose
import system refuses faiss (a meta-path blocker, as if it were not installed), against
an in-memory OpenSearch cluster holding the bundle's items. When the cluster goes down,
the answer comes from an exact search over the bundle's item vectors, with the same
filters, flagged as degraded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from unit.no_faiss import BLOCK_FAISS

from functional.serving_harness import REPO
from learnrec.bundle import MANIFEST_FILE, write_manifest
from learnrec.data.dataset import Dataset
from learnrec.retrieval.index import IndexedItem, SearchHit, VectorIndex
from learnrec.schemas import ContentItem
from learnrec.serving.auth import generate_key_pair
from learnrec.serving.bundle_index import load_index
from learnrec.serving.model_store import LocalModelStore, promote
from learnrec.serving.recommender import Fallback, ModelBundle, Recommender, RecommendOptions

# Runs in the child: block faiss first, then serve through the real handler.
CHILD = (
    BLOCK_FAISS
    + r"""
spec = json.loads(sys.argv[1])

import importlib.util

from unit.opensearch_recorder import FakeCluster, make_client

import learnrec.serving.context as context
from learnrec.retrieval.opensearch_index import OpenSearchIndex
from learnrec.serving.apigw import LambdaContext, rest_event
from learnrec.serving.auth import issue_token
from learnrec.serving.bundle_index import indexed_items
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade

cluster = FakeCluster()
loader = OpenSearchIndex(make_client(cluster), "learnrec-items")
items = indexed_items(__import__("pathlib").Path(spec["bundle"]))
loader.create_version_index("v1", len(items[0].vector))
loader.bulk_load("v1", items)
loader.swap_alias("v1")
context.opensearch_client = lambda endpoint, region=None: make_client(cluster)

store = CatalogStore(make_engine(spec["database_url"]))
upgrade(store.engine)
module_spec = importlib.util.spec_from_file_location("api_handler", spec["handler"])
handler = importlib.util.module_from_spec(module_spec)
module_spec.loader.exec_module(handler)


def call(path, query):
    token = issue_token(spec["private_pem"], spec["user"], ["learner"], ttl_seconds=600)
    event = rest_event("GET", path, query, {"Authorization": f"Bearer {token}"})
    response = handler.handler(event, LambdaContext())
    return {"status": response["statusCode"], "body": json.loads(response["body"])}


path = f"/recommend/{spec['user']}"
filtered = {"k": "5", "include_topics": [spec["topic"]]}
answers = {"health": call("/health", None), "healthy": call(path, filtered)}
cluster.down = True
answers["down"] = call(path, filtered)
answers["similar_down"] = call(f"/similar/{items[0].content_id}", {"k": "3"})
answers["faiss_imported"] = any(m == "faiss" or m.startswith("faiss.") for m in sys.modules)
print(json.dumps(answers))
"""
)


def test_the_api_serves_with_opensearch_and_without_faiss(
    quality_run: Path, small_dataset: Dataset, tmp_path: Path
) -> None:
    models = LocalModelStore(tmp_path / "models")
    bundle = tmp_path / "v1"
    shutil.copytree(quality_run / "bundle", bundle)
    (bundle / MANIFEST_FILE).unlink()
    write_manifest(bundle, "v1", parameters={}, metrics={}, data={})
    models.publish(bundle, "v1")
    promote(models, "v1")
    private_pem, public_pem = generate_key_pair()
    user = str(small_dataset.interactions["user_id"].value_counts().index[0])
    topic = str(small_dataset.items["topics"].explode().value_counts().index[0])
    spec = {
        "bundle": str(bundle),
        "database_url": f"sqlite:///{tmp_path / 'learnrec.db'}",
        "handler": str(REPO / "functions" / "api" / "handler.py"),
        "private_pem": private_pem,
        "user": user,
        "topic": topic,
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KINESIS_", "JWT_", "USER_ID_HASH", "VECTOR_INDEX", "OPENSEARCH"))
    }
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]),
        "DATABASE_URL": spec["database_url"],
        "MODEL_STORE": str(tmp_path / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": "test-hash-key",
        "VECTOR_INDEX": "opensearch",
        "OPENSEARCH_ENDPOINT": "https://search.test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = json.loads(completed.stdout.strip().splitlines()[-1])

    assert answers["health"]["status"] == 200, answers["health"]
    healthy, down = answers["healthy"], answers["down"]
    assert healthy["status"] == 200 and healthy["body"]["fallback"] is None, healthy
    assert down["status"] == 200, down
    assert down["body"]["fallback"] == "exact_retrieval", down
    assert down["body"]["degraded"][0] == "index failed", down
    # The same search, exactly: the small catalog is scored exactly by the cluster too.
    ids = [item["content_id"] for item in down["body"]["items"]]
    assert ids == [item["content_id"] for item in healthy["body"]["items"]]
    similar = answers["similar_down"]
    assert similar["status"] == 200 and similar["body"]["fallback"] == "exact_retrieval"
    assert similar["body"]["items"], similar
    assert answers["faiss_imported"] is False


class _Failing:
    """An index whose every search fails, as OpenSearch does when it is unreachable."""

    def __init__(self, real: VectorIndex) -> None:
        self.real = real

    def search(self, *args: Any, **kwargs: Any) -> list[SearchHit]:
        raise ConnectionError("the index is unreachable")

    def upsert(self, items: Sequence[IndexedItem]) -> None:
        self.real.upsert(items)

    def __len__(self) -> int:
        return len(self.real)


def test_the_exact_fallback_filters_and_knows_items_added_since_load(
    quality_run: Path, small_dataset: Dataset
) -> None:
    bundle = quality_run / "bundle"
    recommender = Recommender(ModelBundle(bundle, verify=False), load_index(bundle))
    user = str(small_dataset.interactions["user_id"].value_counts().index[0])
    options = RecommendOptions(k=5, include_topics=frozenset({"fresh-topic"}))
    assert recommender.recommend(user, [], None, options).fallback == Fallback.POPULARITY
    fresh = ContentItem(content_id="c-fresh", title="Fresh", topics=["fresh-topic"], level=2)
    assert recommender.add_items([fresh]) == 1  # before the exact index exists
    healthy = recommender.recommend(user, [], None, options)
    assert [r.content_id for r in healthy.items] == ["c-fresh"] and healthy.fallback is None

    recommender.index = _Failing(recommender.index)  # type: ignore[arg-type]
    down = recommender.recommend(user, [], None, options)
    assert [r.content_id for r in down.items] == ["c-fresh"]
    assert down.fallback == Fallback.EXACT_RETRIEVAL and down.degraded[0] == "index failed"
    later = fresh.model_copy(update={"content_id": "c-later"})
    recommender.add_items([later])  # after: straight into the exact index
    down = recommender.recommend(user, [], None, replace(options, exclude_ids=frozenset()))
    assert {r.content_id for r in down.items} == {"c-fresh", "c-later"}
    assert not any(
        r.content_id == "c-fresh"
        for r in recommender.recommend(
            user, [], None, replace(options, exclude_ids=frozenset({"c-fresh"}))
        ).items
    )
