"""Run the exported towers with onnxruntime: no TensorFlow at serving time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

# learnrec.bundle owns the file names; serving code and benchmarks also import them here.
from learnrec.bundle import ITEM_TOWER_FILE as ITEM_TOWER_FILE
from learnrec.bundle import USER_TOWER_FILE as USER_TOWER_FILE
from learnrec.bundle import BundleLayout

USER_INPUTS = ("user_idx", "history", "user_features")
ITEM_INPUTS = ("item_idx", "item_features")
OUTPUT_NAME = "embedding"


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Lambda and these machines have few cores; one request's tiny batch gains nothing
    # from a thread pool and pays for its wake-ups.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTowers:
    """The user and item towers of one model version.

    ``user`` takes ``user_idx`` [B] int64, ``history`` [B, H] int64, ``user_features``
    [B, U] float32; ``item`` takes ``item_idx`` [B] int64, ``item_features`` [B, I]
    float32. Both return unit vectors [B, D] float32.
    """

    def __init__(self, directory: Path, threads: int = 1) -> None:
        layout = BundleLayout(directory)
        self._user = _session(layout.user_tower, threads)
        # Serving runs the item tower only for /similar and catalog upserts: its session
        # is created on first use rather than in every cold start.
        self._item_path = layout.item_tower
        self._threads = threads
        self._item_session: ort.InferenceSession | None = None
        if not self._item_path.is_file():
            raise FileNotFoundError(f"{self._item_path} is missing")

    @property
    def _item(self) -> ort.InferenceSession:
        if self._item_session is None:
            self._item_session = _session(self._item_path, self._threads)
        return self._item_session

    def user(
        self, user_idx: np.ndarray, history: np.ndarray, user_features: np.ndarray
    ) -> np.ndarray:
        feeds = {"user_idx": user_idx, "history": history, "user_features": user_features}
        return np.asarray(self._user.run([OUTPUT_NAME], feeds)[0], dtype=np.float32)

    def item(self, item_idx: np.ndarray, item_features: np.ndarray) -> np.ndarray:
        feeds = {"item_idx": item_idx, "item_features": item_features}
        return np.asarray(self._item.run([OUTPUT_NAME], feeds)[0], dtype=np.float32)

    def users_batched(
        self,
        user_idx: np.ndarray,
        history: np.ndarray,
        user_features: np.ndarray,
        batch: int = 4096,
    ) -> np.ndarray:
        parts = [
            self.user(user_idx[s : s + batch], history[s : s + batch], user_features[s : s + batch])
            for s in range(0, len(user_idx), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def items_batched(
        self, item_idx: np.ndarray, item_features: np.ndarray, batch: int = 4096
    ) -> np.ndarray:
        parts = [
            self.item(item_idx[s : s + batch], item_features[s : s + batch])
            for s in range(0, len(item_idx), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
