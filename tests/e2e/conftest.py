"""The whole local stack for browser tests, in this process.

The local AWS (moto server) with a fresh stage's bucket, stream, queue and secret; a
tiny trained bundle published to the stage's S3 model store and promoted; the real API
handler behind the local gateway on a free port; the real ingest handler fed by the
Kinesis poller on a thread, so events posted by the page reach the learner's history
as they would through Lambda's event source mapping; and headless Chromium (Debian's
package, never downloaded) driven by playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from learnrec.bundle import read_manifest
from learnrec.config import get_settings
from learnrec.data.dataset import Dataset, content_items
from learnrec.serving.auth import generate_key_pair
from learnrec.serving.model_store import S3ModelStore, promote
from learnrec.stages import MODELS_PREFIX, ResourceNames
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.gateway import REPO, DemoConfig, Gateway, default_handler_path, load_handler
from learnrec_dev.local.poller import KinesisPoller

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (it needs privileges a container lacks), nothing that phones home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DEMO_LEARNERS = 3


def activate_bundle(aws: LocalAws, names: ResourceNames, bundle: Path, tmp_path: Path) -> None:
    """``bundle`` published to the stage's model store and made the active version."""
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    models = S3ModelStore(
        names.data_bucket,
        MODELS_PREFIX.rstrip("/"),
        aws.client("s3"),
        cache=tmp_path / "model-cache",
    )
    version = str(read_manifest(copy)["version"])
    models.publish(copy, version)
    promote(models, version)


def catalog_database(tmp_path: Path, dataset: Dataset) -> str:
    """A SQLite catalog at the schema's head (as the deploy-time migration leaves it)
    holding the dataset's items; its URL."""
    database_url = f"sqlite:///{tmp_path / 'learnrec.db'}"
    store = CatalogStore(make_engine(database_url))
    upgrade(store.engine)
    store.upsert_items(content_items(dataset.items))
    store.engine.dispose()
    return database_url


@dataclass
class Stack:
    gateway: Gateway
    names: ResourceNames
    learners: list[str]
    kinesis: Any
    poller: KinesisPoller


# Module scope: playwright's sync API keeps an event loop running in this thread while
# it is open, which would break every later test that runs asyncio code.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def stack(
    aws_names: ResourceNames,
    local_aws_server: LocalAws,
    quality_run: Path,
    small_dataset: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    names = aws_names
    activate_bundle(local_aws_server, names, quality_run / "bundle", tmp_path)
    database_url = catalog_database(tmp_path, small_dataset)

    private_pem, public_pem = generate_key_pair()
    queue_url = local_aws_server.client("sqs").get_queue_url(QueueName=names.dead_letter_queue)
    for name, value in {
        "DATABASE_URL": database_url,
        "MODEL_STORE": names.model_store_url,
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_SECRET_ID": names.user_id_hash_secret,
        "KINESIS_STREAM_NAME": names.events_stream,
        "S3_BUCKET": names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue_url["QueueUrl"],
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("USER_ID_HASH_KEY", "JWT_JWKS", "JWT_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()  # both handlers read this stage's settings

    counts = small_dataset.interactions["user_id"].value_counts()
    learners = [str(u) for u in counts.index[:DEMO_LEARNERS]]
    api_handler = load_handler(default_handler_path())
    ingest_handler = load_handler(REPO / "functions" / "ingest" / "handler.py")
    kinesis = local_aws_server.client("kinesis")
    poller = KinesisPoller(names.events_stream, ingest_handler, kinesis=kinesis)
    stop = threading.Event()
    polling = threading.Thread(target=poller.run, args=(stop,), name="poller", daemon=True)
    gateway = Gateway(
        api_handler,
        port=0,
        frontend=REPO / "frontend",
        demo=DemoConfig(private_pem, learners),
    )
    gateway.start()
    polling.start()
    try:
        yield Stack(gateway, names, learners, kinesis, poller)
    finally:
        stop.set()
        polling.join(timeout=30)
        gateway.stop()
        get_settings.cache_clear()
