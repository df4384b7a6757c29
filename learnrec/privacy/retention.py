"""Retention: what is kept only as long as it is needed, enforced on a schedule.

S3 lifecycle rules expire whole prefixes by age (the event archive, dead letters, the
pipeline's prefix; ``cdk/learnrec_cdk/data.py``); this module does what a lifecycle rule
cannot, each figure stated in docs/MAINTENANCE.md:

- learner history older than the event retention is deleted (the archive it came from is
  gone by then, and serving must not keep what the archive may not);
- processed event ids leave the ingest ledger after the de-duplication window;
- model bundles neither active, nor within the rollback depth, nor younger than
  :data:`CANDIDATE_DAYS` (a gated candidate someone may want to inspect) are deleted,
  every object version of them;
- the learner-level artifacts of finished pipeline runs (:data:`LEARNER_ARTIFACTS`) are
  deleted: the next steps of the same run read them, nothing later does;
- batch recommendations (``digests/``, learnrec.serving.batch) are deleted a day after
  they are written: they are sent within hours, and an erasure must reach them within
  its bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from learnrec.privacy.erasure import delete_other_versions
from learnrec.serving.model_store import VERSIONS, S3ModelStore
from learnrec.stages import DIGESTS_PREFIX, PIPELINE_PREFIX
from learnrec.storage import IngestStore, PrivacyStore

CANDIDATE_DAYS = 14
DIGESTS_KEPT = timedelta(days=1)
LEARNER_ARTIFACTS = ("dataset", "retrieval", "bundle")
"""A run's artifacts that hold learners' hashed ids (the interactions, and the user
vocabulary of the towers it trains); the others hold items, metrics and summaries."""
RUN_FINISHED_AFTER = timedelta(hours=13)
"""A run whose objects are all older than this has finished: the state machine's
timeout is 12 hours."""


@dataclass(frozen=True)
class RetentionPolicy:
    history: timedelta = timedelta(days=90)
    dedupe_window: timedelta = timedelta(days=7)
    candidate_age: timedelta = timedelta(days=CANDIDATE_DAYS)


@dataclass
class RetentionReport:
    history_rows_deleted: int = 0
    ledger_rows_deleted: int = 0
    bundles_deleted: list[str] | None = None
    run_objects_deleted: int = 0
    digest_objects_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetentionSweep:
    s3: Any
    bucket: str
    privacy: PrivacyStore
    ledger: IngestStore
    models_prefix: str = "models"
    policy: RetentionPolicy = RetentionPolicy()

    def run(self, now: datetime) -> RetentionReport:
        report = RetentionReport()
        report.history_rows_deleted = self.privacy.prune_history(now - self.policy.history)
        report.ledger_rows_deleted = self.ledger.prune(now - self.policy.dedupe_window)
        report.bundles_deleted = self._delete_old_bundles(now)
        report.run_objects_deleted = self._delete_finished_runs_learner_data(now)
        report.digest_objects_deleted = self._delete_old_digests(now)
        return report

    def _delete_old_digests(self, now: datetime) -> int:
        deleted = 0
        for entry in _entries(self.s3, self.bucket, DIGESTS_PREFIX):
            if now - entry["LastModified"] >= DIGESTS_KEPT:
                deleted += delete_other_versions(self.s3, self.bucket, entry["Key"], keep=None)
        return deleted

    def _delete_old_bundles(self, now: datetime) -> list[str]:
        prefix = self.models_prefix.strip("/")
        pointer = S3ModelStore(self.bucket, prefix, self.s3).pointer()
        if pointer.active is None:
            return []  # nothing was ever promoted: every bundle is a candidate
        keep = {v for v in (pointer.active, *pointer.previous) if v}
        root = f"{prefix}/{VERSIONS}/"
        objects: dict[str, list[str]] = {}
        for key in _version_keys(self.s3, self.bucket, root):
            objects.setdefault(key[len(root) :].split("/", 1)[0], []).append(key)
        deleted = []
        for version, keys in sorted(objects.items()):
            created = _version_time(version)
            if version in keep or created is None or now - created < self.policy.candidate_age:
                continue
            for key in keys:
                delete_other_versions(self.s3, self.bucket, key, keep=None)
            deleted.append(version)
        return deleted

    def _delete_finished_runs_learner_data(self, now: datetime) -> int:
        runs: dict[str, list[tuple[str, datetime]]] = {}
        for entry in _entries(self.s3, self.bucket, PIPELINE_PREFIX):
            run = entry["Key"][len(PIPELINE_PREFIX) :].split("/", 1)[0]
            runs.setdefault(run, []).append((entry["Key"], entry["LastModified"]))
        deleted = 0
        for run, entries in runs.items():
            if now - max(modified for _, modified in entries) < RUN_FINISHED_AFTER:
                continue  # may still be running
            learner_level = tuple(f"{PIPELINE_PREFIX}{run}/{name}/" for name in LEARNER_ARTIFACTS)
            for key, _ in entries:
                if key.startswith(learner_level):
                    deleted += delete_other_versions(self.s3, self.bucket, key, keep=None)
        return deleted


def _entries(s3: Any, bucket: str, prefix: str) -> Iterable[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _version_keys(s3: Any, bucket: str, prefix: str) -> Iterable[str]:
    """Every key under ``prefix`` that has a version or delete marker, current or not."""
    seen: set[str] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if entry["Key"] not in seen:
                seen.add(entry["Key"])
                yield str(entry["Key"])


def _version_time(version: str) -> datetime | None:
    """When a version was made, from its name (learnrec.bundle.new_version); None if not ours."""
    try:
        return datetime.strptime(version, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
