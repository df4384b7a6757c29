"""Making a version active, or the previous one again: the pointer, and the index alias.

Serving re-reads the pointer at most every ``MODEL_CHECK_INTERVAL_S`` and loads the
version it names, so moving the pointer is the whole switch with faiss (the index is in
the bundle). With OpenSearch, serving queries an alias, which must point at the index of
the version the pointer names: the alias moves first, then the pointer, so a failed
alias swap leaves both where they were; if the pointer then cannot be written, the
alias is moved back to the version the pointer still names.

The same functions serve ``learnrec models promote|rollback``, the pipeline's promote
step and the API's ``/admin/models`` routes; each passes an :data:`AliasSwap` made by
:func:`alias_swap` (None with faiss).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from learnrec.config import Settings
from learnrec.retrieval.index import VectorIndexError
from learnrec.serving.model_store import ModelStore, ModelStoreError, Pointer, promote, rollback

#: Points the serving alias at a version's index; raises VectorIndexError.
AliasSwap = Callable[[str], None]


class LifecycleError(RuntimeError):
    """The version could not be made active; nothing was changed."""


class UnknownVersionError(LifecycleError):
    """The version asked for is not in the store, or there is none to go back to."""


class IndexAliasError(LifecycleError):
    """The OpenSearch alias could not be moved (the index service failed)."""


def alias_swap(settings: Settings, opensearch_client: Any = None) -> AliasSwap | None:
    """How to move the alias for ``settings``: None unless ``VECTOR_INDEX=opensearch``."""
    if settings.vector_index != "opensearch":
        return None
    endpoint, alias = settings.opensearch_endpoint, settings.opensearch_alias

    def swap(version: str) -> None:
        from learnrec.retrieval.opensearch_index import open_index  # only when used

        open_index(endpoint, alias, opensearch_client).swap_alias(version)

    return swap


def _swap(swap: AliasSwap | None, version: str) -> None:
    if swap is None:
        return
    try:
        swap(version)
    except VectorIndexError as error:
        raise IndexAliasError(f"cannot point the OpenSearch alias at {version}: {error}") from error


def _move(
    store: ModelStore, target: str, swap: AliasSwap | None, move: Callable[[], Pointer]
) -> Pointer:
    """Alias first, then the pointer; the alias goes back if the pointer cannot move."""
    before = store.pointer().active
    _swap(swap, target)
    try:
        pointer = move()
    except Exception:
        if swap is not None and before is not None:
            # The pointer's error is what the caller must see; the swap back is a bonus.
            with contextlib.suppress(VectorIndexError):
                swap(before)
        raise
    return pointer


def activate(store: ModelStore, version: str, swap: AliasSwap | None = None) -> Pointer:
    """Make ``version`` the active one (``learnrec models promote``, the pipeline's promote)."""
    if version not in store.versions():
        raise UnknownVersionError(f"no model version {version!r} in the store")

    def move() -> Pointer:
        try:
            return promote(store, version)
        except ModelStoreError as error:
            raise LifecycleError(str(error)) from error

    return _move(store, version, swap, move)


def go_back(store: ModelStore, swap: AliasSwap | None = None) -> Pointer:
    """Make the previously active version active again (``learnrec models rollback``)."""
    current = store.pointer()
    if not current.previous:
        raise UnknownVersionError("there is no earlier active version to roll back to")

    def move() -> Pointer:
        try:
            return rollback(store)
        except ModelStoreError as error:
            raise LifecycleError(str(error)) from error

    return _move(store, current.previous[0], swap, move)
