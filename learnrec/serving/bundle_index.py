"""The vector index of a model bundle: built by training, loaded by serving.

Building HNSW over a large catalog takes longer than a Lambda cold start may, so the
training job writes the faiss index into the bundle (``faiss/``) and serving only loads
it. faiss is imported only when that index is built or loaded: serving with OpenSearch
(the api function in AWS, whose package carries no faiss) never needs it, and searches
the bundle's items exactly (:func:`load_exact_index`) when OpenSearch cannot answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from learnrec.bundle import CATALOG_FILE, EMBEDDINGS_FILE, INDEX_DIR, SPACE_FILE
from learnrec.features.space import FeatureSpace
from learnrec.retrieval.candidates import ExactIndex
from learnrec.retrieval.index import IndexedItem
from learnrec.serving.catalog import ServingCatalog

if TYPE_CHECKING:
    from learnrec.retrieval.faiss_index import FaissIndex


def indexed_items(directory: Path) -> list[IndexedItem]:
    """Every catalog item that has a trained vector, with the fields filters use."""
    space = FeatureSpace.load(directory / SPACE_FILE)
    vectors = np.load(directory / EMBEDDINGS_FILE)
    catalog = ServingCatalog.load(directory / CATALOG_FILE)
    return [
        IndexedItem(item.content_id, vectors[idx], tuple(item.topics), item.level)
        for item in catalog
        if (idx := space.items.index(item.content_id))
    ]


def write_index(directory: Path) -> FaissIndex:
    from learnrec.retrieval.faiss_index import FaissIndex

    index = FaissIndex.build(indexed_items(directory))
    index.save(directory / INDEX_DIR)
    return index


def load_index(directory: Path) -> FaissIndex:
    """The bundle's index; built on the spot for bundles made without one."""
    from learnrec.retrieval.faiss_index import FaissIndex

    if (directory / INDEX_DIR).exists():
        return FaissIndex.load(directory / INDEX_DIR)
    return FaissIndex.build(indexed_items(directory))


def load_exact_index(directory: Path, space: FeatureSpace, item_vectors: np.ndarray) -> ExactIndex:
    """The items the bundle's index holds, for exact search with numpy alone.

    ``space`` and ``item_vectors`` (rows by item index) are the loaded bundle's. The
    items and their filter fields come from the saved index's sidecar, vectorised
    (no faiss, no catalog parse); bundles without an index read their catalog instead.
    """
    saved = directory / INDEX_DIR
    if saved.exists():
        from learnrec.retrieval.faiss_index import FaissIndex  # its module loads no faiss

        return FaissIndex.load_exact(
            saved, lambda ids: np.asarray(item_vectors[space.items.lookup(ids)])
        )
    return ExactIndex.build(indexed_items(directory), dim=int(item_vectors.shape[1]))
