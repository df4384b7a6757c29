"""``learnrec privacy sweep``: run the erasure and retention sweeps now."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _sweep(args: argparse.Namespace) -> int:
    from learnrec.privacy.maintenance import run_maintenance

    report = run_maintenance()
    print(json.dumps(report, indent=2))
    return 0 if report["erasure"]["complete"] else 1


def add_privacy_commands(commands: Any) -> None:
    privacy = commands.add_parser("privacy", help="erasure and retention").add_subparsers(
        dest="privacy_command", required=True
    )
    sweep = privacy.add_parser(
        "sweep",
        help="remove erased learners from the archive, dead letters and model bundles, and "
        "delete what is past its retention (S3_BUCKET, MODEL_STORE, DATABASE_URL, "
        "DEAD_LETTER_QUEUE_URL, the user id hash key)",
    )
    sweep.set_defaults(func=_sweep)
