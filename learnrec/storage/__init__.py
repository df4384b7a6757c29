"""Relational storage for the catalog, learner profiles and learner history.

Callers import from here, not from the submodules, so tables can move between modules
without breaking them.
"""

from ..config import DEFAULT_DATABASE_URL
from .catalog import (
    CHUNK_SIZE,
    Base,
    CatalogStore,
    ContentItemRow,
    HistoryEntry,
    HistoryRow,
    LearnerContext,
    LearnerHistoryRow,
    LearnerRow,
    TombstoneReason,
    TombstoneRow,
    UTCDateTime,
    make_engine,
)
from .ledger import IngestStore, ProcessedEventRow
from .privacy import PrivacyStore

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_DATABASE_URL",
    "Base",
    "CatalogStore",
    "ContentItemRow",
    "HistoryEntry",
    "HistoryRow",
    "IngestStore",
    "LearnerContext",
    "LearnerHistoryRow",
    "LearnerRow",
    "PrivacyStore",
    "ProcessedEventRow",
    "TombstoneReason",
    "TombstoneRow",
    "UTCDateTime",
    "make_engine",
]
