"""Relational storage for the catalog, learner profiles and learner history.

Callers import from here, not from the submodules, so tables can move between modules
without breaking them.
"""

from .catalog import (
    CHUNK_SIZE,
    DEFAULT_DATABASE_URL,
    Base,
    CatalogStore,
    ContentItemRow,
    HistoryEntry,
    HistoryRow,
    LearnerHistoryRow,
    LearnerRow,
    UTCDateTime,
    make_engine,
)
from .ledger import IngestStore, ProcessedEventRow

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_DATABASE_URL",
    "Base",
    "CatalogStore",
    "ContentItemRow",
    "HistoryEntry",
    "HistoryRow",
    "IngestStore",
    "LearnerHistoryRow",
    "LearnerRow",
    "ProcessedEventRow",
    "UTCDateTime",
    "make_engine",
]
