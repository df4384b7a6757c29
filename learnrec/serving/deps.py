"""What the routes depend on: the caller, already checked, and each piece of the context.

Authorisation happens here, before a route's body runs: a route that takes a
:data:`LearnerCaller` only runs for a caller who may act for the path's ``user_id``,
one that takes an :data:`AdminCaller` only for an admin. A route never sees an unchecked
caller, so a new route cannot forget the check it declares.

Every dependency here, and every route, is ``async def`` although the work is blocking:
a Lambda container (and the local gateway's one container) serves one request at a time,
so the event loop has nothing else to run, and a plain ``def`` would only cost a thread
hop each (FastAPI sends those to a worker thread; about 0.1 ms apiece, a dozen per
request, and Mangum's fresh event loop per invocation starts a new worker thread each
time).

Each piece of the serving context (store, model, event sink, ...) is a dependency of its
own, read at every request from the context the app built once, so a route declares only
what it uses and a test replaces one piece with ``app.dependency_overrides``, without
building the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from learnrec.config import Settings
from learnrec.events.producer import KinesisEventSink
from learnrec.pipeline.lifecycle import AliasSwap
from learnrec.schemas import EventWindow
from learnrec.serving.auth import (
    Principal,
    TokenVerifier,
    authorize_admin,
    authorize_events,
    authorize_learner,
    authorize_reader,
)
from learnrec.serving.context import Metrics, ServingContext
from learnrec.serving.core import Assignment
from learnrec.serving.model_store import ActiveModel, ModelStore
from learnrec.serving.readiness import ContextLoader
from learnrec.serving.schemas_http import UserId
from learnrec.storage import CatalogStore


async def serving_context(request: Request) -> ServingContext:
    """The context, built by the first request that needs it (a 503 until it can be)."""
    loader: ContextLoader[ServingContext] = request.app.state.context_loader
    return loader.get()


Context = Annotated[ServingContext, Depends(serving_context)]


async def app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]


async def catalog_store(ctx: Context) -> CatalogStore:
    return ctx.store


async def active_model(ctx: Context) -> ActiveModel:
    return ctx.model


async def model_store(ctx: Context) -> ModelStore:
    return ctx.models


async def event_sink(ctx: Context) -> KinesisEventSink | None:
    """The stream events go to; None where none is configured (POST /events is a 503)."""
    return ctx.events


async def user_keys(ctx: Context) -> Callable[[str], str]:
    """Turns a raw user id into the keyed hash it is stored and modelled under."""
    return ctx.user_key


async def assignment(ctx: Context) -> Callable[[str], Assignment]:
    """The experiment's choice of model for a learner's hashed id."""
    return ctx.recommender_for


async def metrics(ctx: Context) -> Metrics:
    return ctx.metrics


async def index_alias(ctx: Context) -> AliasSwap | None:
    """Moves the OpenSearch alias with a promote or rollback; None with faiss."""
    return ctx.index_alias


async def event_window(ctx: Context) -> EventWindow:
    return ctx.event_window


async def token_verifier(ctx: Context) -> TokenVerifier:
    return ctx.verifier


Store = Annotated[CatalogStore, Depends(catalog_store)]
Model = Annotated[ActiveModel, Depends(active_model)]
Models = Annotated[ModelStore, Depends(model_store)]
EventSink = Annotated[KinesisEventSink | None, Depends(event_sink)]
UserKeys = Annotated[Callable[[str], str], Depends(user_keys)]
Assign = Annotated[Callable[[str], Assignment], Depends(assignment)]
MetricsSink = Annotated[Metrics, Depends(metrics)]
IndexAlias = Annotated[AliasSwap | None, Depends(index_alias)]
Window = Annotated[EventWindow, Depends(event_window)]
Verifier = Annotated[TokenVerifier, Depends(token_verifier)]


async def principal(
    verifier: Verifier, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The verified caller of any route that is not public: a 401 without a valid token."""
    return verifier.verify(authorization)


Caller = Annotated[Principal, Depends(principal)]


@dataclass(frozen=True)
class ActingLearner:
    """A caller allowed to act for the path's learner, and that learner's two ids."""

    principal: Principal
    user_id: str
    """As the path gives it: what responses echo."""
    key: str
    """The keyed hash of ``user_id``: what the store and the model know them by."""


async def learner_caller(user_id: UserId, caller: Caller, keys: UserKeys) -> ActingLearner:
    """The learner themself, or a service or admin acting for them; else a 403."""
    authorize_learner(caller, user_id)
    return ActingLearner(caller, user_id, keys(user_id))


async def reader_caller(caller: Caller) -> Principal:
    """Any role: what is read is not personal (trending, similar items)."""
    authorize_reader(caller)
    return caller


async def admin_caller(caller: Caller) -> Principal:
    """The admin role only: service tokens are not admins."""
    authorize_admin(caller)
    return caller


async def events_caller(caller: Caller) -> Principal:
    """A role that may post events at all; which learners' events the route checks
    with :func:`~learnrec.serving.auth.authorize_events` once it has read the body."""
    authorize_events(caller, ())
    return caller


LearnerCaller = Annotated[ActingLearner, Depends(learner_caller)]
ReaderCaller = Annotated[Principal, Depends(reader_caller)]
AdminCaller = Annotated[Principal, Depends(admin_caller)]
EventsCaller = Annotated[Principal, Depends(events_caller)]
