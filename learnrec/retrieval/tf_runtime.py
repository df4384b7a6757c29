"""Import TensorFlow the way TensorFlow Recommenders needs it.

TFRS 0.7.7 is written against Keras 2; TensorFlow 2.21 ships Keras 3 unless
``TF_USE_LEGACY_KERAS=1`` is set before the first import, and TFRS fails under Keras 3.
Every training module imports TensorFlow through here, never directly; serving never
imports it at all.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
import tensorflow_recommenders as tfrs

if os.environ["TF_USE_LEGACY_KERAS"] != "1":  # pragma: no cover - a misconfigured process
    raise RuntimeError("TF_USE_LEGACY_KERAS must be 1 for TensorFlow Recommenders")

__all__ = ["tf", "tfrs"]
