"""The HTTP API (FastAPI), served in Lambda through Mangum by functions/api/.

Routes (:mod:`learnrec.serving.routes`, one router per resource) only translate HTTP to
the core: :class:`~learnrec.serving.recommender.Recommender` for recommendations,
:class:`~learnrec.storage.CatalogStore` for catalog, profiles and history, the model
store for versions, the Kinesis sink for events. They receive a checked caller and the
pieces they use as dependencies (:mod:`learnrec.serving.deps`), so tests swap any of
them. Errors are JSON ``{"error": ..., "detail": ...}``; never a stack trace.

A dependency that fails is answered honestly: with a flagged, degraded 200 where a
useful answer exists without it (popular items from the bundle while the database is
down, ``fallback``/``degraded`` say so), otherwise 503 with ``Retry-After`` naming the
dependency. Bodies never carry exception text, endpoints, account ids or paths (they
reach any client); the log keeps the detail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from learnrec.config import Settings, get_settings
from learnrec.serving.auth import AuthError
from learnrec.serving.context import ServingContext
from learnrec.serving.readiness import (
    DATABASE_DOWN,
    DATABASE_RETRY_AFTER_S,
    DATABASE_UNAVAILABLE,
    RETRY_AFTER_S,
    SCHEMA_NOT_READY,
    ContextLoader,
    DependencyUnavailableError,
    NotReadyError,
)
from learnrec.serving.routes import admin, events, health, learners, recommend
from learnrec.storage.schema import SchemaNotReadyError

logger = logging.getLogger("learnrec.serving")


def create_app(
    context_factory: Callable[[], ServingContext],
    docs: bool | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """Build the app; ``context_factory`` runs at the first request, until it succeeds.

    A factory that fails (a stage whose secrets are not filled yet, a database that is
    down) makes every route answer 503 with ``Retry-After``; it is tried again after a
    bounded back-off (``app.state.context_loader``), never per request.

    ``docs`` serves ``/docs``, ``/redoc`` and ``/openapi.json`` (default: the settings'
    ``API_DOCS``, on locally, off in Lambda). ``app.openapi()`` builds the spec either way,
    for docs/API.md and the gateway's routes. ``settings`` are the process's by default.
    """
    settings = settings or get_settings()
    if docs is None:
        docs = settings.docs_enabled
    app = FastAPI(
        title="learnrec",
        version="0.1.0",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.context_loader = ContextLoader(context_factory)
    app.state.settings = settings

    app.add_exception_handler(AuthError, _auth_error)  # type: ignore[arg-type]
    app.add_exception_handler(NotReadyError, _not_ready)  # type: ignore[arg-type]
    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)
    app.add_exception_handler(SchemaNotReadyError, _schema_not_ready)  # type: ignore[arg-type]
    app.add_exception_handler(DependencyUnavailableError, _dependency_down)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    # Starlette's base class: routing's own 404/405 and body-parsing 400s raise it too.
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)

    for resource in (health, recommend, learners, events, admin):
        app.include_router(resource.router)
    return app


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


async def _not_ready(request: Request, error: NotReadyError) -> JSONResponse:
    loader: ContextLoader[ServingContext] = request.app.state.context_loader
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


async def _database_down(_: Request, error: Exception) -> JSONResponse:
    """The database went away after start-up: the same 503 as one not there at start."""
    logger.warning("database unavailable: %s", error)
    return _database_not_ready("database", DATABASE_UNAVAILABLE)


async def _schema_not_ready(_: Request, error: SchemaNotReadyError) -> JSONResponse:
    """A database that came up after a cold start without it, at the wrong schema."""
    logger.error("the database schema is not ready: %s", error)
    return _database_not_ready("database_schema", SCHEMA_NOT_READY)


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


async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
    ]
    return JSONResponse({"error": "invalid request", "detail": fields}, status_code=422)


async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
    headers = dict(getattr(error, "headers", None) or {})
    if error.status_code == 503:  # every 503 tells the client when to come back
        headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(
        {"error": "request failed", "detail": error.detail},
        error.status_code,
        headers=headers or None,
    )


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    """A bug, not a failing dependency (those are 503s above): logged, never described."""
    logger.error("unhandled error", exc_info=error)
    return JSONResponse(
        {"error": "internal error", "detail": "the request could not be completed"}, 500
    )


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
