"""Making a version active, or the previous one again: the pointer, and the index alias.

Serving re-reads the pointer at most every ``MODEL_CHECK_INTERVAL_S`` and loads the
version it names, so moving the pointer is the whole switch with faiss (the index is in
the bundle). With OpenSearch, serving queries an alias, which must point at the index of
the version the pointer names: the alias moves first, then the pointer, so a failed
alias swap leaves both where they were.
"""

from __future__ import annotations

from typing import Any

from learnrec.config import Settings, get_settings
from learnrec.retrieval.index import VectorIndexError
from learnrec.serving.model_store import ModelStore, ModelStoreError, Pointer, promote, rollback


class LifecycleError(RuntimeError):
    """The version could not be made active; nothing was changed."""


def _swap_alias(version: str, settings: Settings, opensearch_client: Any) -> None:
    if settings.vector_index != "opensearch":
        return
    from learnrec.pipeline.build_index import opensearch_index

    try:
        opensearch_index(settings, opensearch_client).swap_alias(version)
    except VectorIndexError as error:
        raise LifecycleError(f"cannot point the OpenSearch alias at {version}: {error}") from error


def activate(
    store: ModelStore,
    version: str,
    settings: Settings | None = None,
    opensearch_client: Any = None,
) -> Pointer:
    """Make ``version`` the active one (``learnrec models promote``, the pipeline's promote)."""
    settings = settings or get_settings()
    if version not in store.versions():
        raise LifecycleError(f"no model version {version!r} in the store")
    _swap_alias(version, settings, opensearch_client)
    return promote(store, version)


def go_back(
    store: ModelStore, settings: Settings | None = None, opensearch_client: Any = None
) -> Pointer:
    """Make the previously active version active again (``learnrec models rollback``)."""
    settings = settings or get_settings()
    current = store.pointer()
    if not current.previous:
        raise LifecycleError("there is no earlier active version to roll back to")
    _swap_alias(current.previous[0], settings, opensearch_client)
    try:
        return rollback(store)
    except ModelStoreError as error:
        raise LifecycleError(str(error)) from error
