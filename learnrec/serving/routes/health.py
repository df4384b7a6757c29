"""``GET /health``: which dependency is down, for load balancers and operators."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from learnrec.serving.deps import Model, Store
from learnrec.serving.readiness import DATABASE_DOWN, DATABASE_RETRY_AFTER_S, DATABASE_UNAVAILABLE

logger = logging.getLogger("learnrec.serving")
router = APIRouter()


@router.get("/health")
async def health(store: Store, model: Model) -> JSONResponse:
    """Which dependency is down, in fixed words: no paths, no exception text.

    The database down is a 503 (writes cannot be served; reads are degraded); a
    model that cannot be loaded is a 200 ``degraded`` (popular items still answer).
    """
    dependencies: dict[str, str] = {}
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        dependencies["database"] = "ok"
    except DATABASE_DOWN as error:
        logger.warning("health: database unavailable: %s", error)
        dependencies["database"] = DATABASE_UNAVAILABLE
    model.get()
    if model.version is None:
        dependencies["model"] = (
            "no active model version"
            if model.error in (None, "no active model version")
            else "the active model cannot be loaded from the model store"
        )
    elif model.error:  # serving the version it has; the newer one failed to load
        dependencies["model"] = (
            "the model store or the active version cannot be read; serving the loaded one"
        )
    else:
        dependencies["model"] = "ok"
    if model.error:
        logger.warning("health: model: %s", model.error)
    body: dict[str, Any] = {
        "status": "ok" if dependencies["model"] == "ok" else "degraded",
        "model_version": model.version,
        "dependencies": dependencies,
    }
    if dependencies["database"] == "ok":
        return JSONResponse(body)
    body.update(status="not ready", not_ready={"database": DATABASE_UNAVAILABLE})
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
