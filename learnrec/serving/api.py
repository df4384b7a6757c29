"""The HTTP API (FastAPI), served in Lambda through Mangum by functions/api/.

Routes only translate HTTP to the core: :class:`~learnrec.serving.recommender.Recommender`
for recommendations, :class:`~learnrec.storage.CatalogStore` for catalog, profiles and
history, the model store for versions, the Kinesis sink for events. Each dependency is
injected with ``Annotated[..., Depends(...)]`` from one :class:`ServingContext`, so tests
swap any of them. Errors are JSON ``{"error": ..., "detail": ...}``; never a stack trace.

A dependency that fails is answered honestly: with a flagged, degraded 200 where a
useful answer exists without it (popular items from the bundle while the database is
down, ``fallback``/``degraded`` say so), otherwise 503 with ``Retry-After`` naming the
dependency. Bodies never carry exception text, endpoints, account ids or paths (they
reach any client); the log keeps the detail.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

import pydantic_core
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from learnrec.config import get_settings
from learnrec.events.experiments import Experiment, PinnedModels, new_recommendation_id
from learnrec.events.producer import MAX_RECORDS_PER_CALL, KinesisEventSink
from learnrec.events.records import MAX_EVENT_BYTES, Rejection, stored_event_id, validate_event
from learnrec.identity import UserIdHasher
from learnrec.pipeline.lifecycle import (
    AliasSwap,
    IndexAliasError,
    LifecycleError,
    UnknownVersionError,
    activate,
    go_back,
)
from learnrec.schemas import (
    MAX_LEVEL,
    MIN_LEVEL,
    ContentItem,
    Event,
    EventWindow,
    FieldError,
    Learner,
)
from learnrec.serving import telemetry
from learnrec.serving.auth import (
    AuthError,
    Principal,
    TokenVerifier,
    authorize_admin,
    authorize_events,
    authorize_learner,
    authorize_reader,
)
from learnrec.serving.model_store import ActiveModel, ModelStore
from learnrec.serving.readiness import ContextLoader, NotReadyError
from learnrec.serving.recommender import (
    HistoryItem,
    Recommender,
    RecommendOptions,
    RecommendResult,
)
from learnrec.storage import CatalogStore, LearnerContext, PrivacyStore
from learnrec.storage.schema import SchemaNotReadyError

logger = logging.getLogger("learnrec.serving")
MAX_K = 100
DATABASE_RETRY_AFTER_S = 5
RETRY_AFTER_S = 5
"""What a 503 for a dependency that failed mid-flight asks clients to wait."""
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeoutError)
"""What SQLAlchemy raises when the database cannot be reached, or no connection is free."""
DATABASE_UNAVAILABLE = "the database cannot be reached; retrying"
SCHEMA_NOT_READY = "the database schema is missing or older than this code needs: run the migration"
Level = Annotated[int, Field(ge=MIN_LEVEL, le=MAX_LEVEL)]
Topic = Annotated[str, Field(min_length=1, max_length=64)]
ItemId = Annotated[str, Field(min_length=1, max_length=128)]
# A full batch of the largest events, with room for the list's brackets and commas.
MAX_BODY_BYTES = MAX_RECORDS_PER_CALL * (MAX_EVENT_BYTES + 2)


class DependencyUnavailableError(Exception):
    """A dependency failed and no useful answer exists without it: a 503.

    ``message`` goes to the client as it is, so it is a fixed text; the cause is chained
    and logged, never shown.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.message = message


def unavailable(dependency: str, message: str, error: BaseException) -> NoReturn:
    """Log ``error`` in full, then raise the 503 that names only the dependency."""
    logger.warning("%s unavailable: %s", dependency, message, exc_info=error)
    raise DependencyUnavailableError(dependency, message) from error


@dataclass
class ServingContext:
    """Everything a request may need; built once per container."""

    store: CatalogStore
    model: ActiveModel  # yields a Recommender (or None while no model is active)
    models: ModelStore
    verifier: TokenVerifier
    events: KinesisEventSink | None
    hash_key: bytes
    metrics: Callable[[str, float, str], None] = lambda name, value, unit: None
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

    def recommender_for(
        self, hashed_user_id: str
    ) -> tuple[Recommender | None, str | None, list[str]]:
        """(recommender, variant, degraded notes) for a learner under the experiment."""
        return pick_recommender(self.model, self.experiment, self.pinned, hashed_user_id)


def pick_recommender(
    model: ActiveModel,
    experiment: Experiment | None,
    pinned: PinnedModels | None,
    hashed_user_id: str,
) -> tuple[Recommender | None, str | None, list[str]]:
    """The experiment's rule for which model serves a learner; batch jobs share it.

    A variant whose model version cannot be loaded is served by the active model,
    and the response says so, rather than failing the request.
    """
    active: Recommender | None = model.get()
    if experiment is None:
        return active, None, []
    variant = experiment.assign(hashed_user_id)
    version = variant.model_version
    if version is None or version == model.version or pinned is None:
        return active, variant.name, []
    chosen: Recommender | None = pinned.get(version)
    if chosen is None:  # why (a path, an S3 error) is logged, not shown
        logger.warning("variant model %s unavailable: %s", version, pinned.error(version))
        return active, variant.name, [f"variant model {version} unavailable"]
    return chosen, variant.name, []


def recommend_for_learner(
    recommender: Recommender, key: str, learner: LearnerContext, options: RecommendOptions
) -> RecommendResult:
    """A learner's list from what the database holds of them (the database answered).

    The recommend route and batch recommendations both call this, so a digest carries
    the list the API would have shown.
    """
    history = [HistoryItem(h.content_id, h.weight) for h in reversed(learner.history)]
    if learner.opted_out:
        # Opted out of personalisation: their data shapes nothing but the filters.
        return recommender.non_personalised(history, options, "learner opted out")
    # An erased learner is served as a new one: nothing of theirs is left in the
    # database, and a model trained before the erasure must not recognise their id.
    return recommender.recommend(None if learner.erased else key, history, learner.profile, options)


class ItemOut(BaseModel):
    content_id: str
    title: str = Field(default="", description="the catalog's title; empty when it has none")
    score: float
    rank: int
    reason: str


class RecommendationsOut(BaseModel):
    user_id: str
    recommendation_id: str = Field(
        description="echo it in impression/click events: it names the variant and model"
    )
    model_version: str | None
    variant: str | None = Field(default=None, description="the experiment variant served")
    fallback: str | None = Field(description="set when a degraded path served the response")
    degraded: list[str]
    items: list[ItemOut]


class SimilarOut(BaseModel):
    content_id: str
    model_version: str | None
    fallback: str | None
    degraded: list[str] = Field(default=[], description="why a fallback served it, if one did")
    items: list[ItemOut]


class TrendingOut(BaseModel):
    window_days: int
    source: str = Field(description="recent_engagement, or model_popularity when none")
    degraded: list[str] = Field(
        default=[], description="set when a failing dependency left model_popularity"
    )
    items: list[ItemOut]


class EventResultOut(BaseModel):
    index: int
    accepted: bool
    event_id: str | None = Field(
        default=None,
        description="the id the event is stored under: the keyed hash of the event_id sent "
        "(it may be built from the user id), or the id derived for an event sent without one",
        examples=["9f86d081884c7d659a2feaa0c55ad015"],
    )
    errors: list[FieldError] = []
    recorded: bool = Field(
        default=True,
        description="false for an accepted event that is not recorded because its learner "
        "opted out or was erased",
    )


class EventsOut(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResultOut]


class VersionsOut(BaseModel):
    active: str | None
    previous: list[str]
    versions: list[str]


def create_app(context_factory: Callable[[], ServingContext], docs: bool | None = None) -> FastAPI:
    """Build the app; ``context_factory`` runs at the first request, until it succeeds.

    A factory that fails (a stage whose secrets are not filled yet, a database that is
    down) makes every route answer 503 with ``Retry-After``; it is tried again after a
    bounded back-off (``app.state.context_loader``), never per request.

    ``docs`` serves ``/docs``, ``/redoc`` and ``/openapi.json`` (default: the settings'
    ``API_DOCS``, on locally, off in Lambda). ``app.openapi()`` builds the spec either way,
    for docs/API.md and the gateway's routes.
    """
    if docs is None:
        docs = get_settings().docs_enabled
    app = FastAPI(
        title="learnrec",
        version="0.1.0",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    loader = ContextLoader(context_factory)
    app.state.context_loader = loader

    def context() -> ServingContext:
        return loader.get()

    def principal(
        ctx: Annotated[ServingContext, Depends(context)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        return ctx.verifier.verify(authorization)

    Ctx = Annotated[ServingContext, Depends(context)]
    Caller = Annotated[Principal, Depends(principal)]
    UserId = Annotated[str, Path(min_length=1, max_length=128)]

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, error: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(
            {
                "error": "unauthorized" if error.status == 401 else "forbidden",
                "detail": error.message,
            },
            status_code=error.status,
            headers=headers,
        )

    @app.exception_handler(NotReadyError)
    async def _not_ready(_: Request, error: NotReadyError) -> JSONResponse:
        return JSONResponse(
            {
                "error": "service unavailable",
                "detail": error.detail,
                "status": "not ready",
                "not_ready": {p.dependency: p.message for p in error.problems},
            },
            status_code=503,
            headers={"Retry-After": str(loader.retry_after_s())},
        )

    # The database went away after start-up: the same 503 as a database not there at start.
    async def _database_down(_: Request, error: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", error)
        return _database_not_ready("database", DATABASE_UNAVAILABLE)

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)

    # A database that came up after a cold start without it, at the wrong schema.
    @app.exception_handler(SchemaNotReadyError)
    async def _schema_not_ready(_: Request, error: SchemaNotReadyError) -> JSONResponse:
        logger.error("the database schema is not ready: %s", error)
        return _database_not_ready("database_schema", SCHEMA_NOT_READY)

    @app.exception_handler(DependencyUnavailableError)
    async def _dependency_down(_: Request, error: DependencyUnavailableError) -> JSONResponse:
        return JSONResponse(
            {
                "error": "service unavailable",
                "detail": error.message,
                "unavailable": error.dependency,
            },
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse({"error": "invalid request", "detail": fields}, status_code=422)

    # Starlette's base class: routing's own 404/405 and body-parsing 400s raise it too.
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 503:  # every 503 tells the client when to come back
            headers.setdefault("Retry-After", str(RETRY_AFTER_S))
        return JSONResponse(
            {"error": "request failed", "detail": error.detail},
            error.status_code,
            headers=headers or None,
        )

    # A bug, not a failing dependency (those are 503s above): logged, never described.
    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error", exc_info=error)
        return JSONResponse(
            {"error": "internal error", "detail": "the request could not be completed"}, 500
        )

    @app.get("/health")
    def health(ctx: Ctx) -> JSONResponse:
        """Which dependency is down, in fixed words: no paths, no exception text.

        The database down is a 503 (writes cannot be served; reads are degraded); a
        model that cannot be loaded is a 200 ``degraded`` (popular items still answer).
        """
        dependencies: dict[str, str] = {}
        try:
            with ctx.store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            dependencies["database"] = "ok"
        except DATABASE_DOWN as error:
            logger.warning("health: database unavailable: %s", error)
            dependencies["database"] = DATABASE_UNAVAILABLE
        ctx.model.get()
        if ctx.model.version is None:
            dependencies["model"] = (
                "no active model version"
                if ctx.model.error in (None, "no active model version")
                else "the active model cannot be loaded from the model store"
            )
        elif ctx.model.error:  # serving the version it has; the newer one failed to load
            dependencies["model"] = (
                "the model store or the active version cannot be read; serving the loaded one"
            )
        else:
            dependencies["model"] = "ok"
        if ctx.model.error:
            logger.warning("health: model: %s", ctx.model.error)
        body: dict[str, Any] = {
            "status": "ok" if dependencies["model"] == "ok" else "degraded",
            "model_version": ctx.model.version,
            "dependencies": dependencies,
        }
        if dependencies["database"] == "ok":
            return JSONResponse(body)
        body.update(status="not ready", not_ready={"database": DATABASE_UNAVAILABLE})
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)}
        )

    @app.get("/recommend/{user_id}", response_model=RecommendationsOut)
    def recommend(
        user_id: UserId,
        ctx: Ctx,
        caller: Caller,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        include_consumed: bool = False,
        include_topics: Annotated[list[Topic] | None, Query(max_length=50)] = None,
        exclude_topics: Annotated[list[Topic] | None, Query(max_length=50)] = None,
        levels: Annotated[list[Level] | None, Query(max_length=MAX_LEVEL)] = None,
        exclude_ids: Annotated[list[ItemId] | None, Query(max_length=500)] = None,
    ) -> RecommendationsOut:
        authorize_learner(caller, user_id)
        started = time.perf_counter()
        key = ctx.user_key(user_id)
        recommender, variant, notes = ctx.recommender_for(key)
        database_down: Exception | None = None
        try:
            learner = ctx.store.learner_context(key)
        except DATABASE_DOWN as error:
            # Popular items from the bundle use nothing of the learner's, so they are a
            # safe answer for anyone, opted out or erased included.
            logger.warning("recommend without the database: %s", error)
            learner, database_down = LearnerContext(None, None, []), error
        opted_out = learner.opted_out
        options = RecommendOptions(
            k=k,
            include_consumed=include_consumed,
            include_topics=frozenset(include_topics or ()),
            exclude_topics=frozenset(exclude_topics or ()),
            levels=frozenset(levels or ()),
            exclude_ids=frozenset(exclude_ids or ()),
        )
        recommender = recommender or Recommender(None, None)
        if database_down is not None:
            why = "the database is unavailable: popular items, without the learner's history"
            history = [HistoryItem(h.content_id, h.weight) for h in reversed(learner.history)]
            result = recommender.non_personalised(history, options, why)
            if not result.items:  # no model either: nothing useful, the database's 503
                raise database_down
        else:
            result = recommend_for_learner(recommender, key, learner, options)
        result.degraded.extend(notes)
        ctx.metrics(telemetry.LATENCY, time.perf_counter() - started, "Seconds")
        ctx.metrics(telemetry.SUCCESS, 1, "Count")
        if opted_out:  # popular items by the learner's choice: not a degraded service
            ctx.metrics(telemetry.OPTED_OUT, 1, "Count")
        elif result.fallback:
            ctx.metrics(telemetry.fallback_metric(result.fallback), 1, "Count")
        if result.items:
            mean = sum(i.score for i in result.items) / len(result.items)
            ctx.metrics(telemetry.SCORE_MEAN, mean, "None")
        return RecommendationsOut(
            user_id=user_id,
            recommendation_id=new_recommendation_id(variant, result.model_version),
            model_version=result.model_version,
            variant=variant,
            fallback=result.fallback.value if result.fallback else None,
            degraded=result.degraded,
            items=[ItemOut(**vars(i)) for i in result.items],
        )

    @app.get("/similar/{content_id}", response_model=SimilarOut)
    def similar(
        content_id: Annotated[str, Path(min_length=1, max_length=128)],
        ctx: Ctx,
        caller: Caller,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    ) -> SimilarOut:
        authorize_reader(caller)
        recommender: Recommender | None = ctx.model.get()
        if recommender is None:
            raise HTTPException(503, "no model is loaded yet")
        result = recommender.similar(content_id, k)
        if result is None:
            raise HTTPException(404, f"unknown content id {content_id!r}")
        return SimilarOut(
            content_id=content_id,
            model_version=result.model_version,
            fallback=result.fallback.value if result.fallback else None,
            degraded=result.degraded,
            items=[ItemOut(**vars(i)) for i in result.items],
        )

    @app.get("/trending", response_model=TrendingOut)
    def trending(
        ctx: Ctx,
        caller: Caller,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        days: Annotated[int, Query(ge=1, le=90)] = 7,
    ) -> TrendingOut:
        """Most learners over the last ``days``; the model's all-time popular if none."""
        authorize_reader(caller)
        since = datetime.now(UTC) - timedelta(days=days)
        degraded: list[str] = []
        database_down: Exception | None = None
        try:
            counts = ctx.store.trending(since, k)
        except DATABASE_DOWN as error:
            logger.warning("trending without the database: %s", error)
            counts, database_down = [], error
            degraded = ["the database is unavailable: the model's popular items"]
        if counts:
            items = [
                ItemOut(content_id=cid, score=float(n), rank=r, reason=f"{n} learners recently")
                for r, (cid, n) in enumerate(counts, start=1)
            ]
            return TrendingOut(window_days=days, source="recent_engagement", items=items)
        recommender: Recommender | None = ctx.model.get()
        popular = recommender.popular(k) if recommender else []
        if database_down is not None and not popular:  # no model either: the 503
            raise database_down
        return TrendingOut(
            window_days=days,
            source="model_popularity",
            degraded=degraded,
            items=[ItemOut(**vars(i)) for i in popular],
        )

    @app.put("/learners/{user_id}/profile", response_model=Learner)
    def put_profile(user_id: UserId, profile: Learner, ctx: Ctx, caller: Caller) -> Learner:
        authorize_learner(caller, user_id)
        if profile.user_id != user_id:
            raise HTTPException(422, "the profile's user_id must match the path")
        ctx.store.upsert_learners([profile.model_copy(update={"user_id": ctx.user_key(user_id)})])
        return profile

    @app.delete("/learners/{user_id}", status_code=200)
    def erase(user_id: UserId, ctx: Ctx, caller: Caller) -> dict[str, Any]:
        """Erase a learner (the right to erasure) and keep them untracked from now on.

        The database forgets them at once; the erasure sweep removes them from the event
        archive, the pipeline's data and the model bundles within the stated bound.
        """
        authorize_learner(caller, user_id)
        erased = PrivacyStore(ctx.store.engine).erase_learner(ctx.user_key(user_id))
        return {"user_id": user_id, "erased": erased, "untracked": True}

    @app.post("/learners/{user_id}/opt-out")
    def opt_out(user_id: UserId, ctx: Ctx, caller: Caller) -> dict[str, Any]:
        authorize_learner(caller, user_id)
        ctx.store.set_opt_out(ctx.user_key(user_id), True)
        return {"user_id": user_id, "opted_out": True}

    @app.post("/events", status_code=202, response_model=EventsOut)
    async def post_events(request: Request, ctx: Ctx, caller: Caller) -> JSONResponse:
        data = await request.body()
        if len(data) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes; send fewer events")
        try:  # jiter stops at depth 200, where json.loads would exhaust the stack
            body = pydantic_core.from_json(data, allow_inf_nan=False)
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON") from None
        raw = body if isinstance(body, list) else [body]
        if not raw or len(raw) > MAX_RECORDS_PER_CALL:
            raise HTTPException(400, f"send 1 to {MAX_RECORDS_PER_CALL} events per request")
        results: list[EventResultOut] = []
        valid: list[tuple[int, Event, str]] = []
        for index, item in enumerate(raw):
            # The same checks, and messages, as the ingest function applies to the stream.
            checked = validate_event(item, ctx.event_window)
            if isinstance(checked, Rejection):
                results.append(
                    EventResultOut(index=index, accepted=False, errors=list(checked.errors))
                )
                continue
            # Tell the producer the id its event is stored under: the ingest function
            # hashes a sent id and derives the same id for an event sent without one.
            valid.append((index, checked, stored_event_id(checked, ctx.user_key)))
        authorize_events(caller, {e.user_id for _, e, _ in valid})
        untracked = _untracked(ctx, {e.user_id for _, e, _ in valid})
        results.extend(
            EventResultOut(index=index, accepted=True, event_id=event_id, recorded=False)
            for index, event, event_id in valid
            if event.user_id in untracked
        )
        results.extend(_send_events(ctx, [v for v in valid if v[1].user_id not in untracked]))
        results.sort(key=lambda r: r.index)
        accepted = sum(r.accepted for r in results)
        out = EventsOut(accepted=accepted, rejected=len(results) - accepted, results=results)
        status = 202 if accepted else 400
        return JSONResponse(out.model_dump(mode="json"), status_code=status)

    @app.put("/admin/catalog")
    def upsert_catalog(items: list[ContentItem], ctx: Ctx, caller: Caller) -> dict[str, Any]:
        """Add or change items; they become recommendable at once via the item tower."""
        authorize_admin(caller)
        if not items or len(items) > 1000:
            raise HTTPException(400, "send 1 to 1000 items per request")
        recommender: Recommender | None = ctx.model.get()
        indexed = _upsert_catalog(ctx, recommender, items)
        return {"upserted": len(items), "indexed": indexed}

    @app.get("/admin/models", response_model=VersionsOut)
    def list_models(ctx: Ctx, caller: Caller) -> VersionsOut:
        authorize_admin(caller)
        try:
            pointer = ctx.models.pointer()
            versions = ctx.models.versions()
        except Exception as error:  # S3 down, throttled, or denied: botocore's many types
            unavailable("model_store", "the model store cannot be read; retrying", error)
        return VersionsOut(
            active=pointer.active, previous=list(pointer.previous), versions=versions
        )

    @app.post("/admin/models/{version}/promote", response_model=VersionsOut)
    def promote_model(version: str, ctx: Ctx, caller: Caller) -> VersionsOut:
        """Make ``version`` active: the OpenSearch alias (if used), then the pointer."""
        authorize_admin(caller)
        _lifecycle(lambda: activate(ctx.models, version, ctx.index_alias), missing=404)
        return list_models(ctx, caller)

    @app.post("/admin/models/rollback", response_model=VersionsOut)
    def rollback_model(ctx: Ctx, caller: Caller) -> VersionsOut:
        authorize_admin(caller)
        _lifecycle(lambda: go_back(ctx.models, ctx.index_alias), missing=409)
        return list_models(ctx, caller)

    return app


def _database_not_ready(dependency: str, message: str) -> JSONResponse:
    """The 503 for a database that cannot be used, in the readiness layer's shape."""
    return JSONResponse(
        {
            "error": "service unavailable",
            "detail": message,
            "status": "not ready",
            "not_ready": {dependency: message},
        },
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def _untracked(ctx: ServingContext, user_ids: set[str]) -> set[str]:
    """The raw ids among ``user_ids`` of learners who opted out or were erased.

    Their events never reach the stream. Without the database the ingest function, which
    checks again, drops them instead: accepting events must not depend on it.
    """
    keys = {ctx.user_key(user_id): user_id for user_id in user_ids}
    try:
        untracked = ctx.store.untracked_among(keys)
    except DATABASE_DOWN as error:
        logger.warning("events sent without the tombstone check: %s", type(error).__name__)
        return set()
    return {keys[key] for key in untracked}


STREAM_UNAVAILABLE = "the event stream is unavailable; send the events again"
STREAM_REFUSED = "the event stream did not take this event; send it again"


def _send_events(ctx: ServingContext, valid: list[tuple[int, Event, str]]) -> list[EventResultOut]:
    """Put the valid events on the stream; one result each.

    When the stream took none of them (down, throttled, misconfigured) the whole request
    is a 503 with ``Retry-After``, so producers retry rather than drop events as
    "rejected". Kinesis's own messages name the stream's endpoint and account, so a
    refused event's error is a fixed text and the detail goes to the log.
    """
    if not valid:
        return []
    if ctx.events is None:
        raise DependencyUnavailableError("event_stream", "the event stream is not configured")
    try:
        sent = ctx.events.put([e for _, e, _ in valid])
    except Exception as error:
        unavailable("event_stream", STREAM_UNAVAILABLE, error)
    refused = [outcome.error for outcome in sent if not outcome.accepted]
    if refused:
        logger.warning(
            "event stream refused %d of %d events: %s", len(refused), len(sent), refused[0]
        )
    if len(refused) == len(sent):
        raise DependencyUnavailableError("event_stream", STREAM_UNAVAILABLE)
    return [
        EventResultOut(
            index=index,
            accepted=outcome.accepted,
            event_id=event_id,
            errors=[]
            if outcome.accepted
            else [FieldError(field="(stream)", message=STREAM_REFUSED)],
        )
        for (index, _, event_id), outcome in zip(valid, sent, strict=True)
    ]


class _IndexWriteError(Exception):
    """Raised inside the catalog transaction so that the database write is rolled back."""


def _upsert_catalog(
    ctx: ServingContext, recommender: Recommender | None, items: list[ContentItem]
) -> int:
    """Write the items to the database and the index together, or to neither.

    The index write runs inside the database transaction, after the rows are written and
    before the commit: when it fails, the transaction is rolled back, nothing changed,
    and the answer is a 503 to retry. The database goes first because its write can be
    undone and the index's cannot (an OpenSearch bulk write is not atomic). What remains
    is a commit that fails after the index took the items; the client gets a 503 and its
    retry writes the same items again, idempotently, on both sides.
    """
    indexed = 0

    def index_items() -> None:
        nonlocal indexed
        if recommender is None:  # no model yet: the next bundle is built from the database
            return
        try:
            indexed = recommender.add_items(items)
        except Exception as error:
            raise _IndexWriteError from error

    try:
        ctx.store.upsert_items(items, then=index_items)
    except _IndexWriteError as failed:
        unavailable(
            "vector_index",
            "the item index could not be updated, so nothing was changed; send the items again",
            failed.__cause__ or failed,
        )
    return indexed


def _lifecycle(change: Callable[[], object], missing: int) -> None:
    """Run a promote/rollback; nothing moved when it raises. An index service that
    cannot move its alias, or a model store that cannot be read, is a 503 (try again),
    not the caller's mistake."""
    try:
        change()
    except UnknownVersionError as error:
        raise HTTPException(missing, str(error)) from None
    except IndexAliasError as error:
        unavailable("vector_index", "the item index alias cannot be moved; retrying", error)
    except LifecycleError as error:  # its text may name the store's paths: logged only
        logger.warning("model lifecycle refused: %s", error)
        raise HTTPException(409, "the version could not be made active; nothing changed") from None
    except Exception as error:
        unavailable("model_store", "the model store cannot be read or written; retrying", error)
