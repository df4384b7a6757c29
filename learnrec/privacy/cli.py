"""``learnrec privacy``: run the sweeps now, and show where an erasure stands.

Both read the stage from the environment as the functions do: ``DATABASE_URL`` (or
``DATABASE_SECRET_ARN``), the user-id hash key (``USER_ID_HASH_KEY`` or
``USER_ID_HASH_SECRET_ID``), and for the sweep ``S3_BUCKET``, ``MODEL_STORE`` and
``DEAD_LETTER_QUEUE_URL``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def _sweep(args: argparse.Namespace) -> int:
    from learnrec.privacy.maintenance import run_maintenance

    report = run_maintenance()
    print(json.dumps(report, indent=2))
    return 0 if report["erasure"]["complete"] else 1


def _status(args: argparse.Namespace) -> int:
    from learnrec.config import get_settings
    from learnrec.identity import hash_user_id, user_id_hash_key
    from learnrec.storage import make_engine
    from learnrec.storage.catalog import TOMBSTONES
    from learnrec.storage.url import database_url

    settings = get_settings()
    key = hash_user_id(args.user_id, user_id_hash_key(settings))
    engine = make_engine(database_url(settings))
    try:
        with engine.connect() as conn:
            row = conn.execute(TOMBSTONES.select().where(TOMBSTONES.c.user_id == key)).first()
    finally:
        engine.dispose()
    status: dict[str, Any] = {"hashed_id": key, "tombstone": None}
    if row is not None:
        status["tombstone"] = {
            "reason": row.reason,
            "requested_at": row.requested_at.isoformat(),
            "purged_at": row.purged_at.isoformat() if row.purged_at else None,
        }
    print(json.dumps(status, indent=2))
    return 0


def add_privacy_commands(commands: Any) -> None:
    privacy = commands.add_parser("privacy", help="erasure and retention").add_subparsers(
        dest="privacy_command", required=True
    )
    sweep = privacy.add_parser(
        "sweep",
        help="remove erased learners from the archive, dead letters and model bundles, and "
        "delete what is past its retention",
    )
    sweep.set_defaults(func=_sweep)
    status = privacy.add_parser(
        "status",
        help="a learner's hashed id and tombstone: erased or opted out, when, and when the "
        "sweep finished for them (purged_at)",
    )
    status.add_argument("user_id", help="the learner's id as the platform knows it")
    status.set_defaults(func=_status)
