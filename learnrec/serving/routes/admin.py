"""``/admin/*``: the catalog, and which model version serves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from learnrec.pipeline.lifecycle import (
    IndexAliasError,
    LifecycleError,
    UnknownVersionError,
    activate,
    go_back,
)
from learnrec.schemas import ContentItem
from learnrec.serving.deps import AdminCaller, IndexAlias, Model, Models, Store
from learnrec.serving.model_store import ModelStore
from learnrec.serving.readiness import unavailable
from learnrec.serving.recommender import Recommender
from learnrec.serving.schemas_http import VersionsOut
from learnrec.storage import CatalogStore

logger = logging.getLogger("learnrec.serving")
router = APIRouter()


@router.put("/admin/catalog")
async def upsert_catalog(
    items: list[ContentItem], caller: AdminCaller, store: Store, model: Model
) -> dict[str, Any]:
    """Add or change items; they become recommendable at once via the item tower."""
    if not items or len(items) > 1000:
        raise HTTPException(400, "send 1 to 1000 items per request")
    recommender: Recommender | None = model.get()
    indexed = _upsert_catalog(store, recommender, items)
    return {"upserted": len(items), "indexed": indexed}


@router.get("/admin/models", response_model=VersionsOut)
async def list_models(caller: AdminCaller, models: Models) -> VersionsOut:
    return _versions(models)


@router.post("/admin/models/{version}/promote", response_model=VersionsOut)
async def promote_model(
    version: str, caller: AdminCaller, models: Models, alias: IndexAlias
) -> VersionsOut:
    """Make ``version`` active: the OpenSearch alias (if used), then the pointer."""
    _lifecycle(lambda: activate(models, version, alias), missing=404)
    return _versions(models)


@router.post("/admin/models/rollback", response_model=VersionsOut)
async def rollback_model(caller: AdminCaller, models: Models, alias: IndexAlias) -> VersionsOut:
    _lifecycle(lambda: go_back(models, alias), missing=409)
    return _versions(models)


def _versions(models: ModelStore) -> VersionsOut:
    """The active version, the ones a rollback goes back to, and all published."""
    try:
        pointer = models.pointer()
        versions = models.versions()
    except Exception as error:  # S3 down, throttled, or denied: botocore's many types
        unavailable("model_store", "the model store cannot be read; retrying", error)
    return VersionsOut(active=pointer.active, previous=list(pointer.previous), versions=versions)


class _IndexWriteError(Exception):
    """Raised inside the catalog transaction so that the database write is rolled back."""


def _upsert_catalog(
    store: CatalogStore, recommender: Recommender | None, items: list[ContentItem]
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
        store.upsert_items(items, then=index_items)
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
