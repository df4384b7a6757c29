"""Small sample data in the raw-event archive and a catalog database, for pipeline tests.

The events are the generator's, archived as the ingest function archives them (gzipped
JSON lines under ``events/dt=/hour=/<shard>/``), but with arrival times packed into the
last day before :data:`WINDOW_END`, so a two-day window reads them all with few listings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from learnrec.data.generator import GeneratedData, generate
from learnrec.events.archive import archive_key, encode_lines
from learnrec.pipeline.definition import Mode
from learnrec.pipeline.run import RunRequest
from learnrec.stages import ResourceNames
from learnrec.storage import CatalogStore, make_engine
from learnrec.storage.migrate import upgrade

WINDOW_END = datetime(2026, 9, 2, tzinfo=UTC)
WINDOW_DAYS = 2.0
HOURS = 24
TINY: dict[str, dict[str, str]] = {
    "train_retrieval": {
        "epochs": "4",
        "batch-size": "128",
        "embedding-dim": "16",
        "hidden-dim": "32",
        "validation-fraction": "0.0",
    },
    "train_ranking": {"n-estimators": "20", "candidates": "30"},
}


def sample(seed: int = 5) -> GeneratedData:
    return generate(users=150, items=60, events=3000, seed=seed)


def archive_events(
    s3: Any, bucket: str, data: GeneratedData, end: datetime = WINDOW_END, user_prefix: str = ""
) -> int:
    """The sample's events in ``HOURS`` archive objects that arrived in the day before ``end``.

    ``user_prefix`` renames the learners, to add a day of other learners to a stage.
    """
    events = [event.model_dump(mode="json", exclude_none=True) for event in data.events]
    for event in events:
        event["user_id"] = user_prefix + event["user_id"]
    chunk = -(-len(events) // HOURS)
    for hour in range(HOURS):
        batch = events[hour * chunk : (hour + 1) * chunk]
        if not batch:
            continue
        arrival = end - timedelta(hours=HOURS - hour)
        first, last = hour * chunk, hour * chunk + len(batch) - 1
        key = archive_key(arrival, "shardId-000000000000", f"{first:020d}", f"{last:020d}")
        s3.put_object(Bucket=bucket, Key=key, Body=encode_lines(batch))
    return len(events)


def catalog_database(path: Path, data: GeneratedData) -> str:
    url = f"sqlite:///{path}"
    store = CatalogStore(make_engine(url))
    upgrade(store.engine)
    store.upsert_items(data.items)
    store.upsert_learners(data.learners)
    return url


def request(
    names: ResourceNames, catalog: str, mode: Mode = Mode.FULL, **changes: Any
) -> RunRequest:
    values: dict[str, Any] = {
        "mode": mode,
        "stage": names.stage,
        "window_days": WINDOW_DAYS,
        "window_end": WINDOW_END,
        "hyperparameters": TINY,
        "catalog": catalog,
    }
    values.update(changes)
    return RunRequest(**values)
