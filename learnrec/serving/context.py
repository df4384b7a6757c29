"""The serving context (stores, model, auth, event sink): what a request may need,
built from settings once per process.

The dependencies an operator must provide (JWT keys, the user-id hash key, a reachable
database) are checked first, all of them, and reported together as a
:class:`~learnrec.serving.readiness.NotReadyError` whose messages say what to do; the
API turns it into a 503 (:mod:`learnrec.serving.readiness`). Whatever was opened for a
failed build is closed again, so a retry does not leak connections.

``user_id_hash_key`` lives in :mod:`learnrec.identity` and is re-exported here for
callers that found it here first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from learnrec.config import Settings, get_settings
from learnrec.events.experiments import Experiment, PinnedModels
from learnrec.events.producer import KinesisEventSink
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.pipeline.lifecycle import AliasSwap, alias_swap
from learnrec.retrieval.index import VectorIndex
from learnrec.schemas import EventWindow
from learnrec.serving.auth import (
    AuthConfigurationError,
    KeySourceUnreadableError,
    NoVerificationKeyError,
    TokenVerifier,
)
from learnrec.serving.bundle_index import load_index
from learnrec.serving.core import Assignment, pick_recommender
from learnrec.serving.model_store import ActiveModel, ModelStore, store_from_url
from learnrec.serving.readiness import NotReadyError, Unready
from learnrec.serving.recommender import ModelBundle, Recommender
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.schema import SchemaNotReadyError, check_on_first_connect
from learnrec.storage.url import database_url

logger = logging.getLogger("learnrec.serving")

Metrics = Callable[[str, float, str], None]
"""Emits one metric: (name, value, unit)."""


def _no_metrics(name: str, value: float, unit: str) -> None:
    """Where metrics go when nothing collects them (tests, tools)."""


@dataclass
class ServingContext:
    """Everything a request may need; built once per container.

    Routes never take it whole: :mod:`learnrec.serving.deps` hands each the pieces it
    uses, read from here at every request, so a piece replaced here (a test's failing
    store) is the one the next request gets.
    """

    store: CatalogStore
    model: ActiveModel  # yields a Recommender (or None while no model is active)
    models: ModelStore
    verifier: TokenVerifier
    events: KinesisEventSink | None
    hash_key: bytes
    metrics: Metrics = _no_metrics
    experiment: Experiment | None = None
    pinned: PinnedModels | None = None
    # Moves the OpenSearch alias with the pointer on promote/rollback; None with faiss.
    index_alias: AliasSwap | None = None
    # The timestamps POST /events accepts: the stage's retention back, a little skew ahead.
    event_window: EventWindow = field(default_factory=EventWindow)
    _hasher: UserIdHasher | None = field(default=None, init=False, repr=False)

    def user_key(self, user_id: str) -> str:
        """The id a learner is stored and modelled under: the keyed hash of their id.

        Every route hashes the path's id before it reaches the store or the model, so
        rows written here and rows written by the ingest function meet.
        """
        if self._hasher is None:
            self._hasher = UserIdHasher(self.hash_key)
        return self._hasher(user_id)

    def recommender_for(self, hashed_user_id: str) -> Assignment:
        """(recommender, variant, degraded notes) for a learner under the experiment."""
        return pick_recommender(self.model, self.experiment, self.pinned, hashed_user_id)


def opensearch_client(endpoint: str, region: str | None = None) -> Any:
    """An OpenSearch client signing requests with the function's IAM role (SigV4)."""
    from learnrec.retrieval.opensearch_index import signed_client  # only when used

    return signed_client(endpoint, region)  # short timeout: a slow index degrades


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
    return Recommender(
        ModelBundle(directory), index, settings.top_k_retrieval, settings.new_item_slots
    )


_STAGE_IN_SECRET = re.compile(r"learnrec/([A-Za-z0-9_-]+)/")


def _bootstrap_command(settings: Settings) -> str:
    """The fix for a stage's missing secrets, with the stage read off the secret's name."""
    secret = settings.jwt_secret_id or settings.user_id_hash_secret_id or ""
    found = _STAGE_IN_SECRET.search(secret)
    return f"learnrec deploy bootstrap --stage {found.group(1) if found else '<stage>'}"


def _verifier(settings: Settings) -> TokenVerifier | Unready:
    try:
        return TokenVerifier.from_environment(settings=settings)
    except NoVerificationKeyError:
        message = f"JWT verification keys are not configured: run `{_bootstrap_command(settings)}`"
    except KeySourceUnreadableError:
        message = (
            "the JWT key secret cannot be read: check JWT_SECRET_ID and that the API "
            "function may read it"
        )
    except AuthConfigurationError:
        message = (
            "the JWT verification keys are unusable (RS256 public keys of 2048 bits or "
            f"more are needed): run `{_bootstrap_command(settings)} --jwks FILE`"
        )
    return Unready("jwt_keys", message)


def _hash_key(settings: Settings) -> bytes | Unready:
    try:
        key = user_id_hash_key(settings)
    except ValueError:
        message = "the user-id hash key is not configured: set USER_ID_HASH_SECRET_ID"
    except Exception:  # botocore raises many types; all mean the secret is not there
        message = (
            "the user-id hash key secret cannot be read: check USER_ID_HASH_SECRET_ID and "
            f"run `{_bootstrap_command(settings)}`"
        )
    else:
        if key.strip():
            return key
        message = f"the user-id hash key is empty: run `{_bootstrap_command(settings)}`"
    return Unready("user_id_hash_key", message)


def kinesis_client_config() -> Any:
    """Kinesis from a request: short timeouts and one attempt per call (the sink's producer
    retries refused records itself, three times), so an unreachable stream is a 503 that
    producers retry within seconds, not after botocore's minute-long defaults."""
    from botocore.config import Config

    return Config(
        connect_timeout=2, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}
    )


def model_store_client_config() -> Any:
    """S3 for the model store: a pointer read that cannot connect fails in seconds (the
    container keeps serving the model it has; admin routes answer 503), while a bundle
    download still has time for each of its reads."""
    from botocore.config import Config

    return Config(
        connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )


DB_CONNECT_TIMEOUT_S = 5
"""An unreachable database must answer 503 within the function's timeout, not hang it."""


def _connect_args(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    return {"connect_args": {"connect_timeout": DB_CONNECT_TIMEOUT_S}}


def _reachable_store(settings: Settings) -> tuple[CatalogStore | None, Unready | None]:
    """The store, and what is wrong with it if anything.

    An unreachable database still gives a store, checked when it first answers
    (:func:`~learnrec.storage.schema.check_on_first_connect`): the API serves what needs
    no database (popular items from the bundle, flagged degraded) instead of a 503 for
    everything. An unreadable secret or a missing schema gives none: those need an
    operator, and every route says so.
    """
    try:
        url = database_url(settings)
    except Exception:
        return None, Unready(
            "database",
            "the database secret cannot be read: check DATABASE_SECRET_ARN and that the "
            "API function may read it",
        )
    engine = make_engine(url, settings=settings, **_connect_args(url))
    # The schema is checked on the first connection that succeeds, now or later: the
    # deploy-time migration owns it (learnrec.storage.migrate), a cold start only checks.
    check_on_first_connect(engine)
    try:
        with engine.connect():
            pass
    except SchemaNotReadyError as error:
        engine.dispose()
        return None, Unready("database_schema", str(error))
    except Exception:
        return CatalogStore(engine), DATABASE_UNREACHABLE
    return CatalogStore(engine), None


DATABASE_UNREACHABLE = Unready("database", "the database cannot be reached; retrying")


def build_context(
    settings: Settings | None = None, metrics: Metrics | None = None
) -> ServingContext:
    """The context for ``settings``, or :class:`NotReadyError` naming what is missing.

    Without ``settings`` they are read from the environment at each attempt, so a build
    retried after a failure sees a variable fixed in the meantime. ``metrics`` receives
    the API's metrics (the Lambda function's EMF); none by default.
    """
    settings = settings or Settings()
    verifier = _verifier(settings)
    key = _hash_key(settings)
    store, database_problem = _reachable_store(settings)
    problems = [d for d in (verifier, key, database_problem) if isinstance(d, Unready)]
    # Only an unreachable database lets the API start: it may answer later.
    if problems and problems != [DATABASE_UNREACHABLE]:
        if store is not None:
            store.engine.dispose()
        raise NotReadyError(problems)
    assert isinstance(verifier, TokenVerifier) and isinstance(key, bytes)
    assert isinstance(store, CatalogStore)
    if database_problem is not None:
        logger.warning("starting without the database: it cannot be reached yet")
    try:
        return _assemble(settings, store, verifier, key, metrics or _no_metrics)
    except Exception:
        store.engine.dispose()  # the next attempt opens its own
        raise


def _assemble(
    settings: Settings,
    store: CatalogStore,
    verifier: TokenVerifier,
    key: bytes,
    metrics: Metrics,
) -> ServingContext:
    s3_client = None
    if settings.model_store.startswith("s3://"):
        import boto3

        s3_client = boto3.client("s3", config=model_store_client_config())
    models = store_from_url(settings.model_store, s3_client)
    active = ActiveModel(
        models,
        lambda path: load_recommender(path, settings),
        settings.model_check_interval_s,
    )
    events = None
    if settings.events_stream:
        import boto3

        client = boto3.client("kinesis", config=kinesis_client_config())
        events = KinesisEventSink(client, settings.events_stream, key)
    experiment = Experiment.parse(settings.experiment_variants, settings.experiment_name)
    pinned = None
    if experiment is not None:
        pinned = PinnedModels(models.fetch, lambda path: load_recommender(path, settings))
    return ServingContext(
        store=store,
        model=active,
        models=models,
        verifier=verifier,
        events=events,
        hash_key=key,
        metrics=metrics,
        experiment=experiment,
        pinned=pinned,
        index_alias=alias_swap(settings),
        event_window=EventWindow(retention=timedelta(days=settings.event_retention_days)),
    )
