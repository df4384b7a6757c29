"""The erasure sweep: an erased learner leaves every store outside the database.

``DELETE /learners/{id}`` erases the database rows and leaves a tombstone at once
(:class:`learnrec.storage.PrivacyStore`); this sweep, run on a schedule by the maintenance
function, does the rest in bulk for every learner erased since it last finished:

- **event archive** (``events/``) and **spilled dead letters** (``dead-letters/``): every
  version of every object is read (the bucket is versioned); the current one is written
  again without the learner's lines (deleted when none is left), an older one that holds
  them is deleted;
- **dead-letter queue**: their messages are deleted, the others made visible again;
- **model bundles** (``models/versions/``): the learner's hashed id is replaced in the
  bundle's user vocabulary by a placeholder that keeps the indices, so no model trained
  before the erasure recognises them; the manifest's checksum and ``privacy`` record
  follow. This runs for every erased learner on every sweep, so a run that was training
  when the request came is unlinked too;
- **pipeline working data**: the learner-level artifacts of finished runs are deleted
  (see :mod:`learnrec.privacy.retention`), whoever was erased.

The tombstones are marked purged only when the archive, dead letters and queue were swept
to the end; a sweep cut short by its time budget leaves them pending for the next one,
which starts over (objects already clean are skipped unchanged). A learner is matched by
their hashed id and by its keyed hash (how a dead letter holds a hashed partition key).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from learnrec.bundle import MANIFEST_FILE, SPACE_FILE, sha256_bytes
from learnrec.events.dead_letter import DEAD_LETTER_PREFIX
from learnrec.pipeline.artifacts import list_keys
from learnrec.serving.model_store import VERSIONS
from learnrec.stages import EVENTS_PREFIX
from learnrec.storage import PrivacyStore, TombstoneReason

# Hashed ids (and hashes of them) are lowercase hex; anything else in a line is not one.
_HEX_TOKEN = re.compile(rb"[0-9a-f]{32,64}")
ERASED_PLACEHOLDER = "erased:{index}"
"""What an erased learner's vocabulary entry becomes: unique, and nobody's id."""
GRACE = timedelta(minutes=15)
"""Erasures younger than this wait for the next sweep: an ingest batch that looked up the
tombstones just before the request may still be writing its object."""
MIN_SECONDS_LEFT = 30.0
"""A sweep stops (incomplete) when its time budget has less than this left."""


@dataclass
class ErasureReport:
    """What one sweep did; ``complete`` False when its time budget ran out."""

    learners: int = 0
    objects_scanned: int = 0
    objects_rewritten: int = 0
    objects_deleted: int = 0
    lines_removed: int = 0
    object_versions_deleted: int = 0
    queue_messages_deleted: int = 0
    bundles_unlinked: int = 0
    learners_unlinked: int = 0
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TimeBudgetExceededError(Exception):
    """The sweep's time budget ran out; it continues on the next run."""


@dataclass
class ErasureSweep:
    """One sweep over the stores of one stage.

    ``hash_id`` is the user-id hasher (to find a learner's id hashed once more);
    ``seconds_left`` reports the time budget (a Lambda's remaining time), None for none.
    """

    s3: Any
    bucket: str
    privacy: PrivacyStore
    hash_id: Callable[[str], str]
    models_prefix: str = "models"
    sqs: Any = None
    queue_url: str | None = None
    seconds_left: Callable[[], float] | None = None

    def run(self, now: datetime) -> ErasureReport:
        report = ErasureReport()
        pending = self.privacy.pending_erasures(requested_before=now - GRACE)
        report.learners = len(pending)
        try:
            if pending:
                tokens = {p.encode() for p in pending} | {self.hash_id(p).encode() for p in pending}
                for prefix in (EVENTS_PREFIX, DEAD_LETTER_PREFIX):
                    self._sweep_objects(prefix, tokens, report)
                self._sweep_queue(tokens, report)
            self._unlink_bundles(self.privacy.untracked(TombstoneReason.ERASED), now, report)
        except TimeBudgetExceededError:
            report.complete = False
            return report
        self.privacy.mark_purged(pending, now)
        return report

    # -- objects ----------------------------------------------------------------------

    def _check_time(self) -> None:
        if self.seconds_left is not None and self.seconds_left() < MIN_SECONDS_LEFT:
            raise TimeBudgetExceededError

    def _sweep_objects(self, prefix: str, tokens: set[bytes], report: ErasureReport) -> None:
        """Every version of every object: the current one rewritten, older ones deleted.

        An older version (a redelivered batch overwrote its object, or an object was
        deleted) holds data as much as the current one does, so each is read too.
        """
        for key, version, latest in _versions(self.s3, self.bucket, prefix):
            self._check_time()
            report.objects_scanned += 1
            extra = {"VersionId": version} if version else {}
            body = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
            compressed = body[:2] == b"\x1f\x8b"
            text = gzip.decompress(body) if compressed else body
            kept, removed = without_learners(text, tokens)
            if not removed:
                continue
            report.lines_removed += removed
            if not latest:
                self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
                report.object_versions_deleted += 1
                continue
            if kept:
                data = gzip.compress(kept, mtime=0) if compressed else kept
                written = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
                report.objects_rewritten += 1
                keep_version: str | None = written.get("VersionId", "null")
            else:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
                report.objects_deleted += 1
                keep_version = None
            report.object_versions_deleted += delete_other_versions(
                self.s3, self.bucket, key, keep_version, only=version
            )

    # -- the dead-letter queue ----------------------------------------------------------

    def _sweep_queue(self, tokens: set[bytes], report: ErasureReport) -> None:
        """Delete the learners' messages; make every other one visible again at the end."""
        if self.sqs is None or not self.queue_url:
            return
        held: list[str] = []
        try:
            empty_polls = 0
            while empty_polls < 3:  # short polling may answer empty while messages remain
                self._check_time()
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=300,
                    WaitTimeSeconds=0,
                ).get("Messages", [])
                empty_polls = 0 if messages else empty_polls + 1
                doomed = [m for m in messages if _mentions(m["Body"].encode(), tokens)]
                held += [m["ReceiptHandle"] for m in messages if m not in doomed]
                for start in range(0, len(doomed), 10):
                    self.sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(doomed[start : start + 10])
                        ],
                    )
                report.queue_messages_deleted += len(doomed)
        finally:
            for start in range(0, len(held), 10):
                self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for i, handle in enumerate(held[start : start + 10])
                    ],
                )

    # -- model bundles --------------------------------------------------------------------

    def _unlink_bundles(self, erased: set[str], now: datetime, report: ErasureReport) -> None:
        """Replace erased learners' ids in every bundle's vocabulary (see the module doc)."""
        if not erased:
            return
        root = f"{self.models_prefix.strip('/')}/{VERSIONS}/"
        for key in list_keys(self.s3, self.bucket, root):
            if not key.endswith("/" + SPACE_FILE) or key.count("/") != root.count("/") + 1:
                continue
            self._check_time()
            folder = key[: -len(SPACE_FILE)]
            space = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            users: list[str] = space.get("users", [])
            unlinked = [i for i, user in enumerate(users) if user in erased]
            if not unlinked:
                continue
            for i in unlinked:
                users[i] = ERASED_PLACEHOLDER.format(index=i + 1)
            data = json.dumps(space).encode()
            manifest_key = folder + MANIFEST_FILE
            manifest = json.loads(
                self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read()
            )
            manifest["files"][SPACE_FILE] = sha256_bytes(data)
            manifest["privacy"] = {
                "erased_learners_unlinked": manifest.get("privacy", {}).get(
                    "erased_learners_unlinked", 0
                )
                + len(unlinked),
                "swept_at": now.isoformat(),
            }
            written = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            self.s3.put_object(
                Bucket=self.bucket,
                Key=manifest_key,
                Body=json.dumps(manifest, indent=2, default=str).encode(),
            )
            report.object_versions_deleted += delete_other_versions(
                self.s3, self.bucket, key, written.get("VersionId", "null")
            )
            report.bundles_unlinked += 1
            report.learners_unlinked += len(unlinked)


def without_learners(text: bytes, tokens: set[bytes]) -> tuple[bytes, int]:
    """The lines of ``text`` that mention none of ``tokens``, and how many did.

    A line mentions a learner when one of its hex tokens is one of theirs: exact token
    matches, so no other learner's line is dropped by a shared prefix.
    """
    kept: list[bytes] = []
    removed = 0
    for line in text.splitlines(keepends=True):
        if _mentions(line, tokens):
            removed += 1
        else:
            kept.append(line)
    return b"".join(kept), removed


def _mentions(data: bytes, tokens: set[bytes]) -> bool:
    return any(token in tokens for token in _HEX_TOKEN.findall(data))


def _versions(s3: Any, bucket: str, prefix: str) -> Iterable[tuple[str, str | None, bool]]:
    """(key, version id, is the current version) of every object version under ``prefix``.

    Listed before any is changed, so a version this sweep writes is not read again.
    """
    found: list[tuple[str, str | None, bool]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Versions", []):
            version = entry.get("VersionId")
            found.append(
                (str(entry["Key"]), None if version == "null" else version, entry["IsLatest"])
            )
    return found


def delete_other_versions(
    s3: Any, bucket: str, key: str, keep: str | None, only: str | None = None
) -> int:
    """Delete every version and delete marker of ``key`` but ``keep`` (None: all); the count.

    In a versioned bucket an overwritten or deleted object stays as a noncurrent version:
    erasing data means deleting those too. An unversioned bucket lists its one object as
    version "null", which is what ``keep`` is after a write there. ``only``: delete just
    that version (and delete markers), because the others were checked one by one.
    """
    deleted = 0
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    for page in pages:
        markers = [(m, True) for m in page.get("DeleteMarkers", [])]
        for entry, marker in [*((v, False) for v in page.get("Versions", [])), *markers]:
            version = entry.get("VersionId")
            if entry["Key"] != key or version is None or version == keep:
                continue
            if only is not None and not marker and version != only:
                continue
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
            deleted += 1
    return deleted
