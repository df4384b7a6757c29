"""Installed in child processes of the IAM tests through ``PYTHONPATH``: records the AWS
calls the process makes (see ``tests/iam/recorder.py``) when ``LEARNREC_IAM_RECORD`` is
set, and does nothing otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if os.environ.get("LEARNREC_IAM_RECORD"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from iam.recorder import install_from_environment

    install_from_environment()
    sys.path.pop(0)
