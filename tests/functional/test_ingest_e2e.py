"""Real time, end to end: POST /events -> Kinesis (moto server) -> poller -> ingest
handler -> database -> the next GET /recommend.

Both Lambda handlers are the real ones, loaded as Lambda loads them, sharing one
database as they share Aurora in AWS; only the event source mapping is the local poller.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from functional.serving_harness import HASH_KEY, REPO, Api
from learnrec.bundle import MANIFEST_FILE, write_manifest
from learnrec.data.dataset import Dataset, content_items
from learnrec.serving.auth import generate_key_pair
from learnrec.serving.model_store import LocalModelStore, promote
from learnrec.stages import ResourceNames
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade
from learnrec_dev.benchmark.ingest import _environment, load_handler
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.poller import KinesisPoller


class Live:
    def __init__(self, api: Api, poller: KinesisPoller) -> None:
        self.api = api
        self.poller = poller

    def recommend(self, user: str, k: int = 10) -> list[str]:
        status, body = self.api.call(
            "GET", f"/recommend/{user}", {"k": str(k)}, token=self.api.token(user)
        )
        assert status == 200, body
        return [i["content_id"] for i in body["items"]]

    def send(self, user: str, events: list[dict[str, str]]) -> None:
        status, body = self.api.call("POST", "/events", body=events, token=self.api.token(user))
        assert status == 202 and body["rejected"] == 0, body
        assert self.poller.drain() == len(events)


@pytest.fixture
def live(
    quality_run: Path,
    small_dataset: Dataset,
    local_aws_server: LocalAws,
    aws_names: ResourceNames,
    tmp_path: Path,
) -> Iterator[Live]:
    models = LocalModelStore(tmp_path / "models")
    bundle = shutil.copytree(quality_run / "bundle", tmp_path / "v1")
    (bundle / MANIFEST_FILE).unlink()
    write_manifest(bundle, "v1", parameters={}, metrics={}, data={})
    models.publish(bundle, "v1")
    promote(models, "v1")
    private_pem, public_pem = generate_key_pair()
    queue = local_aws_server.client("sqs").get_queue_url(QueueName=aws_names.dead_letter_queue)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'learnrec.db'}",
        "MODEL_STORE": str(tmp_path / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": HASH_KEY,
        "KINESIS_STREAM_NAME": aws_names.events_stream,
        "S3_BUCKET": aws_names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue["QueueUrl"],
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }
    with _environment(env):
        store = CatalogStore(make_engine(env["DATABASE_URL"]))
        upgrade(store.engine)
        store.upsert_items(content_items(small_dataset.items))
        spec = importlib.util.spec_from_file_location(
            "api_handler_live", REPO / "functions" / "api" / "handler.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ingest = load_handler()
        poller = KinesisPoller(
            aws_names.events_stream, ingest.handler, kinesis=local_aws_server.client("kinesis")
        )
        yield Live(Api(module, private_pem, store), poller)


def _event(user: str, item: str, kind: str, minutes_ago: float) -> dict[str, str]:
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"user_id": user, "content_id": item, "event_type": kind, "ts": ts.isoformat()}


def test_a_completed_item_is_not_recommended_next_time(live: Live) -> None:
    user = "e2e-learner"
    before = live.recommend(user)
    done = before[0]
    live.send(user, [_event(user, done, "complete", 1)])
    history = live.api.store.history(live.api.hashed(user))
    assert [(h.content_id, h.event_type.value) for h in history] == [(done, "complete")]
    assert done not in live.recommend(user)


def test_recent_topics_shape_the_next_recommendations(live: Live, small_dataset: Dataset) -> None:
    user = "e2e-topic-learner"
    topics = {
        str(row["content_id"]): list(row["topics"])
        for row in small_dataset.items.to_dict(orient="records")
    }
    before = live.recommend(user)

    def share(items: list[str], topic: str) -> int:
        return sum(topic in topics.get(i, []) for i in items)

    # The topic the learner is least likely to be shown now, and some of its items.
    counts = {t: share(before, t) for ts in topics.values() for t in ts}
    topic = min(sorted(counts), key=lambda t: counts[t])
    engaged = [i for i, ts in topics.items() if topic in ts and i not in before][:4]
    assert len(engaged) == 4
    live.send(user, [_event(user, item, "complete", 10 - n) for n, item in enumerate(engaged)])
    after = live.recommend(user)
    assert not set(engaged) & set(after)
    assert share(after, topic) > share(before, topic)
