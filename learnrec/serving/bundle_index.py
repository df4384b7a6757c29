"""The faiss index of a model bundle: built by training, loaded by serving.

Building HNSW over a large catalog takes longer than a Lambda cold start may, so the
training job writes the index into the bundle (``faiss/``) and serving only loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from learnrec.bundle import CATALOG_FILE, EMBEDDINGS_FILE, INDEX_DIR, SPACE_FILE
from learnrec.features.space import FeatureSpace
from learnrec.retrieval.faiss_index import FaissIndex
from learnrec.retrieval.index import IndexedItem
from learnrec.serving.catalog import ServingCatalog


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
    index = FaissIndex.build(indexed_items(directory))
    index.save(directory / INDEX_DIR)
    return index


def load_index(directory: Path) -> FaissIndex:
    """The bundle's index; built on the spot for bundles made without one."""
    if (directory / INDEX_DIR).exists():
        return FaissIndex.load(directory / INDEX_DIR)
    return FaissIndex.build(indexed_items(directory))
