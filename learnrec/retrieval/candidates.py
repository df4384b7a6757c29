"""Exact top-k retrieval over a dense item matrix, with per-learner exclusions.

Offline evaluation and ranker training score every learner against every item; this is
the exact answer the approximate indexes (faiss HNSW, OpenSearch k-NN) approximate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    exclude: Sequence[np.ndarray],
    k: int,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Best k item rows per learner by inner product, best first.

    ``user_vectors`` [U, D], ``item_vectors`` [N+1, D] whose row 0 (the unknown item)
    is never returned; ``exclude[u]`` item rows to skip for learner u. Returns indices
    and scores [U, k'] with k' = min(k, N); slots a learner cannot fill (everything
    excluded) hold index 0 and score -inf.
    """
    n_items = item_vectors.shape[0] - 1
    width = max(0, min(k, n_items))
    indices = np.zeros((len(user_vectors), width), dtype=np.int64)
    scores = np.full((len(user_vectors), width), -np.inf, dtype=np.float32)
    if width == 0:
        return indices, scores
    for start in range(0, len(user_vectors), chunk):
        block = user_vectors[start : start + chunk] @ item_vectors.T
        block[:, 0] = -np.inf
        for row, seen in enumerate(exclude[start : start + chunk]):
            if len(seen):
                block[row, seen] = -np.inf
        part = np.argpartition(-block, width - 1, axis=1)[:, :width]
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        top[~np.isfinite(top_scores)] = 0
        indices[start : start + chunk] = top
        scores[start : start + chunk] = top_scores
    return indices, scores
