"""Build the serving context (stores, model, auth, event sink) from settings, once.

``user_id_hash_key`` lives in :mod:`learnrec.identity` and is re-exported here for
callers that found it here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnrec.config import Settings, get_settings
from learnrec.events.experiments import Experiment, PinnedModels
from learnrec.events.producer import KinesisEventSink
from learnrec.identity import user_id_hash_key
from learnrec.retrieval.index import VectorIndex
from learnrec.serving.api import ServingContext
from learnrec.serving.auth import TokenVerifier
from learnrec.serving.bundle_index import load_index
from learnrec.serving.model_store import ActiveModel, store_from_url
from learnrec.serving.recommender import ModelBundle, Recommender
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.schema import require_schema
from learnrec.storage.url import database_url


def opensearch_client(endpoint: str, region: str | None = None) -> Any:
    """An OpenSearch client signing requests with the function's IAM role (SigV4)."""
    import boto3
    from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection

    session = boto3.Session()
    auth = AWSV4SignerAuth(session.get_credentials(), region or session.region_name, "es")
    host = endpoint.removeprefix("https://").rstrip("/")
    return OpenSearch(
        hosts=[{"host": host, "port": 443}],
        http_auth=auth,
        use_ssl=True,
        verify_certs=True,
        connection_class=RequestsHttpConnection,
        timeout=2,  # a slow index must degrade the response, not time out the request
        max_retries=1,
    )


def load_recommender(directory: Path, settings: Settings | None = None) -> Recommender:
    """A bundle plus its index: the bundle's faiss, or the OpenSearch alias in AWS."""
    settings = settings or get_settings()
    index: VectorIndex
    if settings.vector_index == "opensearch":
        if not settings.opensearch_endpoint:
            raise ValueError("VECTOR_INDEX=opensearch needs OPENSEARCH_ENDPOINT")
        from learnrec.retrieval.opensearch_index import OpenSearchIndex  # only when used

        client = opensearch_client(settings.opensearch_endpoint)
        index = OpenSearchIndex(client, settings.opensearch_alias)
    else:
        index = load_index(directory)
    return Recommender(ModelBundle(directory), index, settings.top_k_retrieval)


def build_context(settings: Settings | None = None) -> ServingContext:
    settings = settings or get_settings()
    store = CatalogStore(make_engine(database_url(settings)))
    require_schema(store.engine)  # never created here: see learnrec.storage.migrate
    models = store_from_url(settings.model_store)
    active = ActiveModel(
        models,
        lambda path: load_recommender(path, settings),
        settings.model_check_interval_s,
    )
    key = user_id_hash_key(settings)
    events = None
    if settings.events_stream:
        import boto3

        events = KinesisEventSink(boto3.client("kinesis"), settings.events_stream, key)
    experiment = Experiment.parse(settings.experiment_variants, settings.experiment_name)
    pinned = None
    if experiment is not None:
        pinned = PinnedModels(models.fetch, lambda path: load_recommender(path, settings))
    return ServingContext(
        store=store,
        model=active,
        models=models,
        verifier=TokenVerifier.from_environment(),
        events=events,
        hash_key=key,
        experiment=experiment,
        pinned=pinned,
    )
