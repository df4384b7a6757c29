"""Erasure and retention in the database: what a tombstone starts, and what ages out.

Erasing a learner deletes every row that holds their hashed id (profile, history, the
ingest ledger) and leaves a tombstone in the same transaction, so there is no moment at
which their events could be recorded again. The stores outside the database (the event
archive, dead letters, the pipeline's data, model bundles) are swept later, in bulk, by
:mod:`learnrec.privacy.erasure`, which reads the pending tombstones from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, delete, select, update

from .catalog import HISTORY, LEARNERS, TOMBSTONES, TombstoneReason, write_tombstone
from .ledger import PROCESSED


class PrivacyStore:
    """Tombstones and the deletes they start, behind one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def erase_learner(self, user_id: str) -> bool:
        """Erase what the database holds about a learner and tombstone them, in one transaction.

        Return whether there was anything to erase. The tombstone keeps the learner
        untracked afterwards (an opt-out is kept as the stronger erasure).
        """
        with self.engine.begin() as conn:
            removed = 0
            for table in (HISTORY, LEARNERS, PROCESSED):
                result = conn.execute(delete(table).where(table.c.user_id == user_id))
                removed += int(result.rowcount or 0)
            write_tombstone(conn, user_id, TombstoneReason.ERASED)
        return removed > 0

    def pending_erasures(self, requested_before: datetime) -> list[str]:
        """Erased learners whose data outside the database is not yet swept."""
        stmt = (
            select(TOMBSTONES.c.user_id)
            .where(
                TOMBSTONES.c.reason == TombstoneReason.ERASED.value,
                TOMBSTONES.c.purged_at.is_(None),
                TOMBSTONES.c.requested_at <= requested_before,
            )
            .order_by(TOMBSTONES.c.user_id)
        )
        with self.engine.connect() as conn:
            return [str(user_id) for user_id in conn.scalars(stmt)]

    def mark_purged(self, user_ids: Iterable[str], at: datetime) -> int:
        """Record that the sweep removed these learners from every store; how many rows."""
        ids = list(user_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                update(TOMBSTONES)
                .where(TOMBSTONES.c.user_id.in_(ids), TOMBSTONES.c.purged_at.is_(None))
                .values(purged_at=at)
            )
            return int(result.rowcount or 0)

    def untracked(self, reason: TombstoneReason | None = None) -> set[str]:
        """Every tombstoned learner (or those of one ``reason``), plus flag-only opt-outs.

        The retraining pipeline leaves all of them out; the bundle sweep unlinks the
        erased ones from models trained before their request.
        """
        stmt = select(TOMBSTONES.c.user_id)
        if reason is not None:
            stmt = stmt.where(TOMBSTONES.c.reason == reason.value)
        with self.engine.connect() as conn:
            found = {str(user_id) for user_id in conn.scalars(stmt)}
            if reason in (None, TombstoneReason.OPTED_OUT):
                flagged = select(LEARNERS.c.user_id).where(LEARNERS.c.opted_out.is_(True))
                found.update(str(user_id) for user_id in conn.scalars(flagged))
        return found

    def prune_history(self, before: datetime) -> int:
        """Forget engagements older than ``before`` (the events' retention); how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(HISTORY).where(HISTORY.c.ts < before))
            return int(result.rowcount or 0)
